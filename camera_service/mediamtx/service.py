"""MediaMTX integration: path synchronisation, health and recovery for the whole daemon.

:class:`MediaMTXService` is the one object the application wires in (see ``app.py``):

* **Paths.** Every camera has a MediaMTX path named by its id (``paths.path_name_for``),
  configured as :func:`.desired.desired_conf` says. Camera listeners re-provision a
  camera's path when it connects or changes and delete it when the camera is forgotten; a
  reconcile runs whenever MediaMTX comes up (start-up and after every outage) and whenever a
  periodic ``/v3/paths/list`` shows a wanted path missing (a restart between two probes).
  Ownership: ``<state_dir>/mediamtx_paths.json``.
* **Health.** :class:`~camera_service.mediamtx.monitor.MediaMTXMonitor` probes ``/v3/info``
  (backoff with jitter while down, circuit breaker); transitions publish
  ``system_status_update`` on ``system.health``. Calls fail fast with
  :class:`MediaMTXUnavailableError` while MediaMTX is down instead of waiting for timeouts.
* **Intents.** What the daemon wants of a path beyond its camera (explicit streaming,
  recording in MediaMTX) is kept in :attr:`MediaMTXService.intents`; the streaming methods
  (:mod:`.streaming`) and MediaMTX recordings (:mod:`.recording`) change it and
  :meth:`MediaMTXService.apply` the result.
* **Single reader.** An exclusive (V4L2) device is opened by one process at a time. When
  MediaMTX is up, recordings of exclusive cameras read the camera's RTSP stream
  (:class:`~.recording.StreamRecordings`) and snapshots read the stream while it is live
  (:class:`~.snapshots.StreamSnapshots`), so MediaMTX's publisher stays the only reader. A
  recording that reads the device directly (started while MediaMTX was down) makes the path
  idle (no publisher) until it ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from camera_service.auth.daemon_credentials import DaemonCredentials
from camera_service.auth.identity import Identity
from camera_service.auth.stream_tokens import StreamTokens
from camera_service.cameras.model import Camera
from camera_service.cameras.registry import CameraRegistry
from camera_service.config import Config, MediaMTXConfig
from camera_service.events import Event, EventBus
from camera_service.health import ComponentStatus
from camera_service.media.source import CaptureSource
from camera_service.mediamtx.access import auth_settings_problems
from camera_service.mediamtx.client import (
    MediaMTXClient,
    MediaMTXError,
    MediaMTXNotFound,
    MediaMTXServerError,
    MediaMTXUnavailable,
)
from camera_service.mediamtx.desired import PathIntents, PathSettings, desired_conf
from camera_service.mediamtx.errors import (
    MediaMTXUnavailableError,
    PathConflictError,
    StreamingDisabledError,
    StreamStateError,
)
from camera_service.mediamtx.holder import StreamHolders
from camera_service.mediamtx.models import Path as MtxPath
from camera_service.mediamtx.models import PathConf
from camera_service.mediamtx.monitor import BreakerState, CircuitBreaker, MediaMTXMonitor
from camera_service.mediamtx.paths import (
    OWNERSHIP_FILE,
    PathConflict,
    PathOwnership,
    PathProvisioner,
    ProvisionAction,
    ReconcileReport,
    path_name_for,
)
from camera_service.mediamtx.segments import record_path
from camera_service.mediamtx.urls import local_rtsp_url, stream_urls
from camera_service.supervise import start_supervised

if TYPE_CHECKING:
    from camera_service.media.recordings import RecordingManager

log = logging.getLogger(__name__)

T = TypeVar("T")


class MediaMTXService:
    """MediaMTX paths, streaming state, health and recovery for the whole daemon."""

    def __init__(
        self,
        config: MediaMTXConfig,
        cameras: CameraRegistry,
        bus: EventBus,
        *,
        state_dir: Path,
        recordings_dir: Path,
        ffmpeg: str = "ffmpeg",
        client: MediaMTXClient | None = None,
        ready_timeout: float = 10.0,
        credentials: DaemonCredentials | None = None,
        tokens: StreamTokens | None = None,
    ) -> None:
        """``credentials``/``tokens`` (stream access control on): the daemon's MediaMTX
        credentials (API client, publishers) and the issuer of the URLs' stream tokens."""
        self.config = config
        self.enabled = config.enabled
        self.ready_timeout = ready_timeout
        self.cameras = cameras
        self._bus = bus
        self.settings = PathSettings(
            record_path=record_path(Path(recordings_dir)),
            close_after=config.on_demand_close_after,
            ffmpeg=ffmpeg,
            publisher=credentials.publisher if credentials is not None else None,
        )
        self.tokens = tokens
        self.recordings_dir = Path(recordings_dir)
        api_auth = (credentials.api.user, credentials.api.password) if credentials else None
        self.client = client or MediaMTXClient(
            config.api_url, timeout=config.request_timeout, auth=api_auth
        )
        #: The daemon's HTTP port once it listens (checked against authHTTPAddress).
        self.auth_http_port: int | None = None
        self.auth_problems: list[str] | None = None
        self.ownership = PathOwnership(Path(state_dir) / OWNERSHIP_FILE)
        self.provisioner = PathProvisioner(self.client, ownership=self.ownership)
        self.monitor = MediaMTXMonitor(
            self.client,
            interval=config.health_interval,
            backoff_base=config.backoff_base,
            backoff_cap=config.backoff_max,
            probe_timeout=config.request_timeout,
            breaker=CircuitBreaker(3, reset_timeout=max(config.backoff_max, 0.1)),
            on_down=self._went_down,
            on_up=self._came_up,
        )
        self._local_host = urlsplit(config.api_url).hostname or "127.0.0.1"
        self.holders = StreamHolders(self.local_url, ffmpeg=ffmpeg)
        self._recordings: RecordingManager | None = None
        self._device_readers: list[Callable[[str], bool]] = []
        self.intents = PathIntents()
        self._paths: dict[str, MtxPath] = {}
        self._conflicts: dict[str, str] = {}
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._was_down = False
        self.last_reconcile: ReconcileReport | None = None
        self.last_reconcile_at: float | None = None
        self.reconciles = 0
        self._reconciled_started: str | None = None
        self.reconciled = asyncio.Event()
        # Called with the camera id when its path becomes ready (the publisher FFmpeg, a
        # MediaMTX child, streams the device: start_streaming or an on-demand reader, seen
        # by the next path refresh): must not block or raise.
        self.stream_ready_listeners: list[Callable[[str], None]] = []

    @classmethod
    def from_config(
        cls,
        config: Config,
        cameras: CameraRegistry,
        bus: EventBus,
        *,
        credentials: DaemonCredentials | None = None,
        tokens: StreamTokens | None = None,
    ) -> MediaMTXService:
        return cls(
            config.mediamtx,
            cameras,
            bus,
            state_dir=config.storage.state_dir,
            recordings_dir=config.storage.recordings_dir,
            ffmpeg=config.ffmpeg.binary,
            credentials=credentials,
            tokens=tokens,
        )

    def attach_device_reader(self, reads_device: Callable[[str], bool]) -> None:
        """Another single reader of cameras (continuous recording): while it holds a device,
        the camera's path does not publish from it."""
        self._device_readers.append(reads_device)

    def attach_recordings(self, recordings: RecordingManager) -> None:
        """The recording manager whose device readers the paths must respect."""
        self._recordings = recordings

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Register camera listeners; when enabled, start probing MediaMTX (reconcile on up)."""
        self.cameras.add_listener(self._camera_changed)
        self.cameras.add_forget_listener(self._camera_forgotten)
        self._bus.add_listener(self._bus_event)
        if not self.enabled:
            return
        await self.monitor.start()
        self._loop_task = start_supervised("mediamtx-maintain", self._maintain)

    async def stop(self) -> None:
        tasks = [t for t in (self._loop_task, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._loop_task = None
        await self.holders.stop()
        await self.monitor.stop()
        await self.client.close()

    async def wait_idle(self) -> None:
        """Wait until no provisioning work (path syncs, reconcile) is pending."""
        while pending := [t for t in self._tasks if not t.done()]:
            await asyncio.wait(pending)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- providers for the application --------------------------------------------------

    def streams_for(self, camera: Camera, identity: Identity | None = None) -> dict[str, str]:
        """``{rtsp, hls, webrtc}`` reader URLs of the camera; empty when disabled. With
        stream access control they carry a stream token for the camera, bound to the
        caller's API key (or capped at its JWT's expiry) when ``identity`` is given."""
        if not self.enabled:
            return {}
        cfg = self.config
        token = None
        if self.tokens is not None:
            token = self.tokens.issue(path_name_for(camera.id), time.time(), identity)
        return stream_urls(
            camera.id,
            cfg.public_host,
            rtsp_port=cfg.rtsp_port,
            hls_port=cfg.hls_port,
            webrtc_port=cfg.webrtc_port,
            token=token,
        )

    def stream_metrics(self, camera: Camera) -> dict[str, Any]:
        """``{bytes_sent, readers}`` from the last ``/v3/paths/list`` (never blocks)."""
        path = self._paths.get(camera.id)
        if path is None:
            return {}
        return {"bytes_sent": path.bytes_out, "readers": path.reader_count}

    def capabilities(self) -> list[str]:
        if not self.enabled:
            return []
        caps = ["streaming"]
        if self.config.record_with == "mediamtx":
            caps.append("mediamtx-recording")
        return caps

    def health(self) -> ComponentStatus:
        """The ``mediamtx`` component of ``/health/mediamtx`` and ``get_status``."""
        if not self.enabled:
            return ComponentStatus("disabled", {"enabled": False})
        details: dict[str, Any] = {
            "enabled": True,
            **self.monitor.status(),
            "owned_paths": sorted(self.ownership.names()),
            "conflicts": dict(self._conflicts),
            "streaming": sorted(self.intents.streaming),
            "recording": sorted(self.intents.recording),
            "last_reconcile": self._reconcile_summary(),
        }
        if self.tokens is not None:
            details["stream_auth"] = {
                "checked": self.auth_problems is not None,
                "problems": self.auth_problems or [],
            }
        state = self.monitor.status()["status"]
        if state == "healthy":
            return ComponentStatus("healthy", details)
        if state == "unknown":
            return ComponentStatus("starting", details)
        return ComponentStatus("unhealthy", details)

    def metrics_section(self, admin: bool) -> dict[str, Any]:
        """``stream_metrics`` of ``get_metrics``: per-path figures of our paths."""
        if not self.enabled:
            return {"enabled": False}
        paths = {
            name: {
                "ready": path.is_ready,
                "readers": path.reader_count,
                "bytes_sent": path.bytes_out,
                "bytes_received": path.bytes_in,
            }
            for name, path in sorted(self._paths.items())
            if self.ownership.owns(name)
        }
        return {
            "enabled": True,
            "mediamtx": self.monitor.status()["status"],
            "active_streams": sum(1 for p in paths.values() if p["ready"]),
            "paths": paths,
        }

    def _reconcile_summary(self) -> dict[str, Any] | None:
        report = self.last_reconcile
        if report is None:
            return None
        return {
            "at": self.last_reconcile_at,
            "count": self.reconciles,
            "added": report.added,
            "replaced": report.replaced,
            "reloaded": report.reloaded,
            "removed": report.removed,
            "failed": report.failed,
        }

    # --- health transitions ---------------------------------------------------------------

    def _publish_health(self, status: str, message: str) -> None:
        params = {"status": status, "message": message, "component": "mediamtx"}
        self._bus.publish(Event("system.health", "system_status_update", params))

    def _went_down(self, reason: str) -> None:
        self._was_down = True
        self._paths.clear()
        status = "unhealthy" if self.config.required else "degraded"
        self._publish_health(status, f"MediaMTX is unreachable: {reason}")

    def _came_up(self) -> None:
        if self._was_down:
            self._was_down = False
            self._publish_health("healthy", "MediaMTX is reachable again")
        self._spawn(self.reconcile())
        if self.tokens is not None:
            self._spawn(self.check_auth_settings())

    async def check_auth_settings(self) -> list[str] | None:
        """Read MediaMTX's authentication settings; log what defeats stream access control."""
        try:
            conf = await self._call(self.client.global_config)
        except (MediaMTXUnavailableError, MediaMTXNotFound) as exc:
            log.warning("MediaMTX authentication settings not checked: %s", exc)
            return None
        self.auth_problems = auth_settings_problems(conf, self.auth_http_port)
        for problem in self.auth_problems:
            log.error("MediaMTX does not enforce stream access control: %s", problem)
        return self.auth_problems

    async def kick(self, protocol: str, session_id: str) -> bool:
        """Close a MediaMTX reader session (its API key was revoked); False if gone."""
        try:
            kicked = await self._call(lambda: self.client.kick_session(protocol, session_id))
        except (MediaMTXUnavailableError, MediaMTXNotFound) as exc:
            log.warning("MediaMTX session %s %s not kicked: %s", protocol, session_id, exc)
            return False
        if kicked:
            log.info("MediaMTX session %s %s kicked (API key revoked)", protocol, session_id)
        return kicked

    # --- desired state ----------------------------------------------------------------------

    def reads_device(self, camera_id: str) -> bool:
        """A recording process of this daemon reads the camera's device itself."""
        if any(reads(camera_id) for reads in self._device_readers):
            return True
        if self._recordings is None:
            return False
        handle = self._recordings.process(camera_id)
        return handle is not None and handle.reader and handle.running

    def reads_stream(self, camera_id: str) -> bool:
        """A recording depends on the camera's MediaMTX stream."""
        if camera_id in self.intents.recording:
            return True
        if self._recordings is None:
            return False
        handle = self._recordings.process(camera_id)
        return handle is not None and not handle.reader and handle.running

    def desired_conf(self, camera: Camera) -> PathConf | None:
        """The path configuration a camera needs now; None when it cannot have a path."""
        return desired_conf(
            camera, self.intents, self.settings, device_read=self.reads_device(camera.id)
        )

    def _desired_all(self) -> dict[str, PathConf]:
        desired: dict[str, PathConf] = {}
        for camera in self.cameras.list():
            conf = self.desired_conf(camera)
            if conf is not None:
                desired[path_name_for(camera.id)] = conf
        return desired

    # --- provisioning -----------------------------------------------------------------------

    async def reconcile(self) -> ReconcileReport | None:
        """Bring MediaMTX in line with every camera; None when MediaMTX failed meanwhile."""
        async with self._lock:
            desired = self._desired_all()
            started = self.monitor.started
            try:
                report = await self.provisioner.reconcile(desired)
            except MediaMTXError as exc:
                log.warning("MediaMTX reconcile failed: %s", exc)
                self.monitor.trigger()
                return None
        self._conflicts = dict(report.failed)
        self._reconciled_started = started
        self.last_reconcile, self.last_reconcile_at = report, time.time()
        self.reconciles += 1
        self.reconciled.set()
        level = logging.INFO if report.changed or report.failed else logging.DEBUG
        log.log(level, "MediaMTX paths reconciled", extra=self._reconcile_summary())
        return report

    async def sync_camera(self, camera_id: str) -> None:
        """Provision (or remove) one camera's path now; quiet no-op while MediaMTX is down."""
        if not self.enabled or not self.monitor.is_up:
            return
        async with self._lock:
            try:
                await self._sync_locked(camera_id)
            except PathConflict as exc:
                self._conflicts[exc.name] = str(exc)
                log.warning("%s", exc)
            except MediaMTXError as exc:
                log.warning("MediaMTX path of %s not updated: %s", camera_id, exc)
                self.monitor.trigger()

    async def _sync_locked(self, camera_id: str) -> None:
        camera = self.cameras.get(camera_id)
        conf = self.desired_conf(camera) if camera is not None else None
        name = camera_id  # camera ids are valid path names (model.is_valid_camera_id)
        if conf is None:
            if self.ownership.owns(name):
                await self.provisioner.remove(name)
                self._paths.pop(name, None)
            return
        await self.provisioner.ensure(name, conf)
        self._conflicts.pop(name, None)

    def _camera_changed(self, camera: Camera, topic: str) -> None:
        if self.enabled:
            self._spawn(self.sync_camera(camera.id))

    def _camera_forgotten(self, camera: Camera) -> None:
        self.intents.forget(camera.id)
        self._spawn(self.holders.release_all(camera.id))
        if self.enabled:
            self._spawn(self.sync_camera(camera.id))

    def _bus_event(self, event: Event) -> None:
        """A recording started or ended: the path may need its publisher back (or gone)."""
        if self.enabled and event.topic.startswith("recording.") and event.device:
            self._spawn(self.sync_camera(event.device))

    async def _maintain(self) -> None:
        """Refresh the path cache; reconcile when MediaMTX restarted between two probes
        (``/v3/info`` ``started`` changed) or a wanted path went missing."""
        while True:
            await asyncio.sleep(self.config.health_interval)
            if not self.monitor.is_up:
                continue
            if self.monitor.started != self._reconciled_started:
                log.warning("MediaMTX restarted (started %s); reconciling", self.monitor.started)
                await self.reconcile()
            try:
                await self.refresh_paths()
            except MediaMTXUnavailableError:
                continue
            wanted = set(self._desired_all()) - set(self._conflicts)
            if wanted - set(self._paths):
                log.warning(
                    "MediaMTX lost paths %s; reconciling", sorted(wanted - set(self._paths))
                )
                await self.reconcile()

    # --- MediaMTX calls for the methods --------------------------------------------------

    def require_enabled(self) -> None:
        if not self.enabled:
            raise StreamingDisabledError("streaming is disabled (mediamtx.enabled: false)")

    def require_up(self) -> None:
        """Fail fast: no request is attempted while MediaMTX is known to be down."""
        self.require_enabled()
        breaker = self.monitor.breaker
        if not self.monitor.is_up or breaker.state is BreakerState.OPEN:
            status = self.monitor.status()
            detail = status["last_error"] or "not reachable yet"
            raise MediaMTXUnavailableError(f"{detail} (retry in {status['next_probe_in']} s)")

    async def _call(self, request: Callable[[], Awaitable[T]]) -> T:
        self.require_up()
        try:
            result = await request()
        except (MediaMTXUnavailable, MediaMTXServerError) as exc:
            self.monitor.breaker.record_failure()  # an outage: probe now, fail fast meanwhile
            self.monitor.trigger()
            raise MediaMTXUnavailableError(exc.message) from None
        except MediaMTXNotFound:
            raise
        except MediaMTXError as exc:  # refused (400) or misconfigured (401/403): no outage
            raise MediaMTXUnavailableError(exc.message) from None
        self.monitor.breaker.record_success()
        return result

    async def refresh_paths(self) -> list[MtxPath]:
        """``/v3/paths/list`` (every path), also refreshing the metrics cache."""
        paths = await self._call(self.client.list_all_paths)
        previous, self._paths = self._paths, {p.name: p for p in paths}
        for path in paths:
            self._note_ready(previous.get(path.name), path)
        return paths

    def _note_ready(self, before: MtxPath | None, path: MtxPath) -> None:
        """Tell the listeners about a path that became ready since the last look."""
        if not path.is_ready or not self.stream_ready_listeners:
            return
        if before is not None and before.is_ready and before.ready_time == path.ready_time:
            return
        if self.cameras.get(path.name) is None:
            return
        for listener in self.stream_ready_listeners:
            try:
                listener(path.name)
            except Exception:
                log.exception("stream ready listener failed")

    async def path_state(self, camera: Camera) -> MtxPath | None:
        """Runtime state of the camera's path (fresh); None when MediaMTX has no such path."""
        name = path_name_for(camera.id)
        try:
            path = await self._call(lambda: self.client.get_path(name))
        except MediaMTXNotFound:
            self._paths.pop(name, None)
            return None
        self._note_ready(self._paths.get(name), path)
        self._paths[name] = path
        return path

    def streaming_since(self, camera_id: str) -> datetime | None:
        return self.intents.streaming.get(camera_id)

    def stream_in_use(self, camera_id: str) -> bool:
        """Explicitly streamed, or a recording reads the stream."""
        return camera_id in self.intents.streaming or self.reads_stream(camera_id)

    def conflict(self, camera_id: str) -> str | None:
        return self._conflicts.get(camera_id)

    async def apply(self, camera: Camera) -> str | None:
        """Make the camera's path match :meth:`desired_conf` now (raises on failure).

        Returns the ``readyTime`` of the path as it was before a write that restarts it
        (MediaMTX applies writes after its 200, so the old path may still answer ready for
        a moment; :func:`.streaming.wait_ready` ignores that one), else None.
        """
        conf = self.desired_conf(camera)
        if conf is None:
            raise StreamStateError(f"Camera {camera.id} has no stream.", "ERROR", ["CONNECTED"])
        name = path_name_for(camera.id)
        before = await self.path_state(camera)
        async with self._lock:
            try:
                action = await self._call(lambda: self.provisioner.ensure(name, conf))
            except PathConflict as exc:
                self._conflicts[name] = str(exc)
                raise PathConflictError(str(exc)) from None
        self._conflicts.pop(name, None)
        if action in (ProvisionAction.REPLACED, ProvisionAction.ADDED) and before is not None:
            return before.ready_time if before.is_ready else None
        return None

    def spawn_sync(self, camera_id: str) -> None:
        """Re-provision the camera's path in the background (after a failed change)."""
        self._spawn(self.sync_camera(camera_id))

    # --- where the daemon's own readers read ----------------------------------------------

    def local_url(self, camera_id: str) -> str:
        """RTSP URL of the camera's path for the daemon's own readers; with stream access
        control it carries a fresh stream token (call it for every new session)."""
        name = path_name_for(camera_id)
        token = self.tokens.issue(name, time.time()) if self.tokens is not None else None
        return local_rtsp_url(name, self._local_host, self.config.rtsp_port, token)

    def stream_source(self, source: CaptureSource) -> CaptureSource:
        """The camera's MediaMTX stream as an FFmpeg input (H.264: recordings copy it)."""
        return CaptureSource(
            camera_id=source.camera_id,
            input=self.local_url(source.camera_id),
            input_format="rtsp",
            exclusive=False,
            is_h264=True,
            resolution=source.resolution,
            fps=source.fps,
        )

    def path_usable(self, camera_id: str) -> bool:
        """MediaMTX is up and holds our path for the camera (no conflict)."""
        name = camera_id
        return (
            self.enabled
            and self.monitor.is_up
            and self.ownership.owns(name)
            and name not in self._conflicts
        )
