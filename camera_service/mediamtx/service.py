"""MediaMTX integration: path per camera, streaming state, health, recovery, recordings.

:class:`MediaMTXService` is the one object the application wires in (see ``app.py``):

* **Paths.** Every camera has a MediaMTX path named by its id (``paths.path_name_for``).
  Camera listeners re-provision a camera's path when it connects or changes and delete it
  when the camera is forgotten; a reconcile runs whenever MediaMTX comes up (start-up and
  after every outage) and whenever a periodic ``/v3/paths/list`` shows a wanted path missing
  (a restart between two probes). Ownership: ``<state_dir>/mediamtx_paths.json``.
* **Health.** :class:`~camera_service.mediamtx.monitor.MediaMTXMonitor` probes ``/v3/info``
  (backoff with jitter while down, circuit breaker); transitions publish
  ``system_status_update`` on ``system.health``. Streaming calls fail fast with
  :class:`MediaMTXUnavailableError` while MediaMTX is down instead of waiting for timeouts.
* **Streaming.** ``start_streaming`` switches a path from on-demand (``runOnDemand``) to
  always-on (``runOnInit`` / ``sourceOnDemand: false``) and waits until MediaMTX reports it
  ready; ``stop_streaming`` switches back unless a recording reads the stream.
* **Single reader.** An exclusive (V4L2) device is opened by one process at a time. When
  MediaMTX is up, recordings of exclusive cameras read the camera's RTSP stream
  (:class:`StreamRecordings`), so MediaMTX's publisher stays the only reader and viewers can
  watch during a recording; snapshots read the stream while it is live
  (:class:`StreamSnapshots`). A recording that reads the device directly (started while
  MediaMTX was down) makes the path idle (no publisher) until it ends, and
  ``start_streaming`` answers :class:`StreamStateError` (-32020) meanwhile.
* **Recording in MediaMTX** (``mediamtx.record_with: mediamtx``): :class:`StreamRecordings`
  turns ``record`` on for the path (always-on publisher, ``recordFormat: fmp4``, files in
  the recordings directory named ``<camera>_<YYYY-MM-DD_HH-MM-SS>.mp4``) and falls back to
  FFmpeg when MediaMTX is down. The record flag is part of the desired path configuration,
  so a reconcile after a MediaMTX restart resumes the recording (in a new file).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from camera_service.cameras.model import Camera, CameraStatus
from camera_service.cameras.registry import CameraRegistry
from camera_service.config import Config, MediaMTXConfig
from camera_service.events import Event, EventBus
from camera_service.health import ComponentStatus
from camera_service.media.encoders import SOFTWARE_ENCODER, publish_args
from camera_service.media.ffmpeg import AlreadyRecording, MediaError, NotRecording
from camera_service.media.recordings import (
    RecordingInfo,
    RecordingManager,
    RecordingResult,
)
from camera_service.media.snapshots import SnapshotResult, SnapshotService
from camera_service.media.source import CaptureSource, capture_source_for
from camera_service.mediamtx.client import (
    MediaMTXClient,
    MediaMTXError,
    MediaMTXNotFound,
    MediaMTXServerError,
    MediaMTXUnavailable,
)
from camera_service.mediamtx.models import Path as MtxPath
from camera_service.mediamtx.models import PathConf
from camera_service.mediamtx.monitor import BreakerState, CircuitBreaker, MediaMTXMonitor
from camera_service.mediamtx.paths import (
    DEFAULT_ENCODER_ARGS,
    OWNERSHIP_FILE,
    PathConflict,
    PathOwnership,
    PathProvisioner,
    ReconcileReport,
    idle_publisher_conf,
    is_source_url,
    path_name_for,
    publisher_path_conf,
    recording_fields,
    source_path_conf,
    stream_urls,
)
from camera_service.storage.files import generated_filename

log = logging.getLogger(__name__)

#: MediaMTX ``recordPath`` (``%path`` is the camera id): the project's generated-name format.
RECORD_NAME_PATTERN = "%path_%Y-%m-%d_%H-%M-%S"
READY_POLL_S = 0.1
SEGMENT_SCAN_S = 1.0
RecordRoute = Literal["device", "stream", "mediamtx"]
T = TypeVar("T")


class StreamingDisabledError(Exception):
    """``mediamtx.enabled`` is false (-32030)."""


class MediaMTXUnavailableError(Exception):
    """MediaMTX is down, its breaker is open, or it failed the request (-32050)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class PathConflictError(MediaMTXUnavailableError):
    """The camera's path name is taken by a path camera-service did not create (-32050)."""


class StreamStateError(Exception):
    """The camera cannot do that now (-32020)."""

    def __init__(self, message: str, state: str, allowed: list[str]) -> None:
        super().__init__(message)
        self.message = message
        self.state = state
        self.allowed = allowed


@dataclass(frozen=True)
class StreamStop:
    start_time: datetime
    end_time: datetime
    stream_continues: bool


def _utc_now() -> datetime:
    return datetime.now(UTC)


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
    ) -> None:
        self.config = config
        self.enabled = config.enabled
        self.ready_timeout = ready_timeout
        self._cameras = cameras
        self._bus = bus
        self._ffmpeg = ffmpeg
        self.video_encoder = SOFTWARE_ENCODER  # set from the encoder probe (media/encoders.py)
        self._record_path = str(Path(recordings_dir).resolve() / RECORD_NAME_PATTERN)
        self.recordings_dir = Path(recordings_dir)
        self.client = client or MediaMTXClient(config.api_url, timeout=config.request_timeout)
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
        self._recordings: RecordingManager | None = None
        self._streaming: dict[str, datetime] = {}
        self._mtx_recording: set[str] = set()
        self._paths: dict[str, MtxPath] = {}
        self._conflicts: dict[str, str] = {}
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._was_down = False
        self.last_reconcile: ReconcileReport | None = None
        self.last_reconcile_at: float | None = None
        self.reconciles = 0
        self.reconciled = asyncio.Event()

    @classmethod
    def from_config(cls, config: Config, cameras: CameraRegistry, bus: EventBus) -> MediaMTXService:
        return cls(
            config.mediamtx,
            cameras,
            bus,
            state_dir=config.storage.state_dir,
            recordings_dir=config.storage.recordings_dir,
            ffmpeg=config.ffmpeg.binary,
        )

    def attach_recordings(self, recordings: RecordingManager) -> None:
        """The recording manager whose device readers the paths must respect."""
        self._recordings = recordings

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Register camera listeners; when enabled, start probing MediaMTX (reconcile on up)."""
        self._cameras.add_listener(self._camera_changed)
        self._cameras.add_forget_listener(self._camera_forgotten)
        self._bus.add_listener(self._bus_event)
        if not self.enabled:
            return
        await self.monitor.start()
        self._loop_task = asyncio.create_task(self._maintain(), name="mediamtx-maintain")

    async def stop(self) -> None:
        tasks = [t for t in (self._loop_task, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._loop_task = None
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

    def streams_for(self, camera: Camera) -> dict[str, str]:
        """``{rtsp, hls, webrtc}`` reader URLs of the camera; empty when disabled."""
        if not self.enabled:
            return {}
        cfg = self.config
        return stream_urls(
            camera.id,
            cfg.public_host,
            rtsp_port=cfg.rtsp_port,
            hls_port=cfg.hls_port,
            webrtc_port=cfg.webrtc_port,
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
            "streaming": sorted(self._streaming),
            "recording": sorted(self._mtx_recording),
            "last_reconcile": self._reconcile_summary(),
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

    # --- desired state ----------------------------------------------------------------------

    def _reads_device(self, camera_id: str) -> bool:
        """A recording process of this daemon reads the camera's device itself."""
        if self._recordings is None:
            return False
        handle = self._recordings.process(camera_id)
        return handle is not None and handle.reader and handle.running

    def _reads_stream(self, camera_id: str) -> bool:
        """A recording depends on the camera's MediaMTX stream."""
        if camera_id in self._mtx_recording:
            return True
        if self._recordings is None:
            return False
        handle = self._recordings.process(camera_id)
        return handle is not None and not handle.reader and handle.running

    def desired_conf(self, camera: Camera) -> PathConf | None:
        """The path configuration a camera needs now; None when it cannot have a path."""
        try:
            source = capture_source_for(camera)
            base = self._base_conf(camera, source)
        except ValueError as exc:
            log.warning("camera %s gets no MediaMTX path: %s", camera.id, exc)
            return None
        recording = camera.id in self._mtx_recording and camera.connected
        return recording_fields(base, self._record_path, enabled=recording)

    def _base_conf(self, camera: Camera, source: CaptureSource) -> PathConf:
        """Idle while the camera is away or its device is read by a recording; else
        published on demand, or always on while streamed or recorded by MediaMTX."""
        if not camera.connected or (source.exclusive and self._reads_device(camera.id)):
            return idle_publisher_conf()
        always_on = camera.connected and (
            camera.id in self._streaming or camera.id in self._mtx_recording
        )
        close_after = self.config.on_demand_close_after
        if source.input_format is None and is_source_url(source.input):
            return source_path_conf(source.input, on_demand=not always_on, close_after=close_after)
        before, encoder_args = publish_args(
            source.is_h264, self.video_encoder, source.fps, DEFAULT_ENCODER_ARGS
        )
        return publisher_path_conf(
            [*before, *source.input_args()],
            close_after=close_after,
            ffmpeg=self._ffmpeg,
            always_on=always_on,
            encoder_args=encoder_args,
        )

    def _desired_all(self) -> dict[str, PathConf]:
        desired: dict[str, PathConf] = {}
        for camera in self._cameras.list():
            conf = self.desired_conf(camera)
            if conf is not None:
                desired[path_name_for(camera.id)] = conf
        return desired

    # --- provisioning -----------------------------------------------------------------------

    async def reconcile(self) -> ReconcileReport | None:
        """Bring MediaMTX in line with every camera; None when MediaMTX failed meanwhile."""
        async with self._lock:
            desired = self._desired_all()
            try:
                report = await self.provisioner.reconcile(desired)
            except MediaMTXError as exc:
                log.warning("MediaMTX reconcile failed: %s", exc)
                self.monitor.trigger()
                return None
        self._conflicts = dict(report.failed)
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
        camera = self._cameras.get(camera_id)
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
        self._streaming.pop(camera.id, None)
        self._mtx_recording.discard(camera.id)
        if self.enabled:
            self._spawn(self.sync_camera(camera.id))

    def _bus_event(self, event: Event) -> None:
        """A recording started or ended: the path may need its publisher back (or gone)."""
        if self.enabled and event.topic.startswith("recording.") and event.device:
            self._spawn(self.sync_camera(event.device))

    async def _maintain(self) -> None:
        """Refresh the path cache; reconcile when a wanted path went missing."""
        while True:
            await asyncio.sleep(self.config.health_interval)
            if not self.monitor.is_up:
                continue
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
        self._paths = {p.name: p for p in paths}
        return paths

    async def path_state(self, camera: Camera) -> MtxPath | None:
        """Runtime state of the camera's path (fresh); None when MediaMTX has no such path."""
        name = path_name_for(camera.id)
        try:
            path = await self._call(lambda: self.client.get_path(name))
        except MediaMTXNotFound:
            self._paths.pop(name, None)
            return None
        self._paths[name] = path
        return path

    def streaming_since(self, camera_id: str) -> datetime | None:
        return self._streaming.get(camera_id)

    def stream_in_use(self, camera_id: str) -> bool:
        """Explicitly streamed, or a recording reads the stream."""
        return camera_id in self._streaming or self._reads_stream(camera_id)

    def conflict(self, camera_id: str) -> str | None:
        return self._conflicts.get(camera_id)

    async def start_streaming(self, camera: Camera) -> datetime:
        """Publish the camera now (always-on) and wait until MediaMTX has the stream ready."""
        self.require_up()
        if camera.status is not CameraStatus.CONNECTED:
            raise StreamStateError(
                f"Camera {camera.id} is {camera.status.value}.", camera.status.value, ["CONNECTED"]
            )
        if self._reads_device(camera.id) and capture_source_for(camera).exclusive:
            raise StreamStateError(
                f"Camera {camera.id} is being recorded from its device; stop the recording "
                "first (or record through MediaMTX).",
                "RECORDING",
                ["IDLE"],
            )
        new = camera.id not in self._streaming
        started = self._streaming.setdefault(camera.id, _utc_now())
        try:
            await self._apply(camera)
            await self._wait_ready(camera)
        except BaseException:
            if new:
                self._streaming.pop(camera.id, None)
                self._spawn(self.sync_camera(camera.id))
            raise
        return started

    async def stop_streaming(self, camera: Camera) -> StreamStop:
        """Back to on-demand; the stream continues while a recording reads it."""
        self.require_up()
        started = self._streaming.get(camera.id)
        if started is None:
            raise StreamStateError(f"Camera {camera.id} is not streaming.", "INACTIVE", ["ACTIVE"])
        del self._streaming[camera.id]
        try:
            await self._apply(camera)
        except MediaMTXUnavailableError as exc:  # applied by the reconcile after recovery
            log.warning("stop_streaming of %s not applied yet: %s", camera.id, exc.detail)
        return StreamStop(started, _utc_now(), self._reads_stream(camera.id))

    async def _apply(self, camera: Camera) -> None:
        conf = self.desired_conf(camera)
        if conf is None:
            raise StreamStateError(f"Camera {camera.id} has no stream.", "ERROR", ["CONNECTED"])
        name = path_name_for(camera.id)
        async with self._lock:
            try:
                await self._call(lambda: self.provisioner.ensure(name, conf))
            except PathConflict as exc:
                self._conflicts[name] = str(exc)
                raise PathConflictError(str(exc)) from None
        self._conflicts.pop(name, None)

    async def _wait_ready(self, camera: Camera) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ready_timeout
        while True:
            path = await self.path_state(camera)
            if path is not None and path.is_ready:
                return
            if loop.time() >= deadline:
                raise MediaMTXUnavailableError(
                    f"stream {camera.id} not ready within {self.ready_timeout:g} s"
                )
            await asyncio.sleep(READY_POLL_S)

    # --- single reader: where recordings and snapshots read from ---------------------------

    def stream_source(self, source: CaptureSource) -> CaptureSource:
        """The camera's MediaMTX stream as an FFmpeg input (H.264: recordings copy it)."""
        name = path_name_for(source.camera_id)
        url = f"rtsp://{self._local_host}:{self.config.rtsp_port}/{name}"
        return CaptureSource(
            camera_id=source.camera_id,
            input=url,
            input_format="rtsp",
            exclusive=False,
            is_h264=True,
            resolution=source.resolution,
            fps=source.fps,
        )

    def _path_usable(self, camera_id: str) -> bool:
        name = camera_id
        return (
            self.enabled
            and self.monitor.is_up
            and self.ownership.owns(name)
            and name not in self._conflicts
        )

    def recording_route(self, source: CaptureSource, *, in_mediamtx: bool = False) -> RecordRoute:
        """Who records: MediaMTX (when ``in_mediamtx`` is possible and configured), FFmpeg
        from the stream (exclusive cameras) or FFmpeg from the device."""
        if not self._path_usable(source.camera_id):
            return "device"
        if in_mediamtx and self.config.record_with == "mediamtx":
            return "mediamtx"
        return "stream" if source.exclusive else "device"

    async def snapshot_source(self, source: CaptureSource) -> CaptureSource:
        """Read an exclusive camera's frame from its stream while MediaMTX's publisher holds
        the device (explicit stream, a recording through it, or on-demand readers)."""
        if not source.exclusive or not self._path_usable(source.camera_id):
            return source
        if self.stream_in_use(source.camera_id):
            return self.stream_source(source)
        camera = self._cameras.get(source.camera_id)
        try:
            path = await self.path_state(camera) if camera is not None else None
        except (MediaMTXUnavailableError, StreamingDisabledError):
            return source
        return self.stream_source(source) if path is not None and path.is_ready else source

    # --- MediaMTX recordings ------------------------------------------------------------------

    async def begin_recording(self, camera_id: str) -> None:
        """Turn MediaMTX recording on for the camera (always-on publisher + ``record``)."""
        camera = self._cameras.get(camera_id)
        if camera is None:
            raise StreamStateError(f"Camera {camera_id} is gone.", "DISCONNECTED", ["CONNECTED"])
        self._mtx_recording.add(camera_id)
        try:
            await self._apply(camera)
        except BaseException:
            self._mtx_recording.discard(camera_id)
            self._spawn(self.sync_camera(camera_id))
            raise

    async def end_recording(self, camera_id: str) -> None:
        """Turn MediaMTX recording off; applied at recovery if MediaMTX is down now."""
        self._mtx_recording.discard(camera_id)
        camera = self._cameras.get(camera_id)
        if camera is None:
            return
        try:
            await self._apply(camera)
        except (MediaMTXUnavailableError, StreamingDisabledError, StreamStateError) as exc:
            log.warning("MediaMTX recording of %s not switched off yet: %s", camera_id, exc)


# --- recordings and snapshots that respect the stream -------------------------------------


@dataclass(eq=False)
class _MtxRecording:
    info: RecordingInfo
    files: dict[Path, int] = field(default_factory=dict)
    preexisting: set[Path] = field(default_factory=set)
    watcher: asyncio.Task[None] | None = None
    stopping: bool = False


class StreamRecordings(RecordingManager):
    """RecordingManager that records through MediaMTX when it can.

    * ``record_with: mediamtx``, format fmp4, MediaMTX up: MediaMTX records the path.
    * exclusive camera, MediaMTX up: FFmpeg records the camera's RTSP stream (the device
      keeps a single reader: MediaMTX's publisher).
    * otherwise (MediaMTX disabled or down): FFmpeg reads the device, as RecordingManager.
    """

    def __init__(self, mediamtx: MediaMTXService, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._mediamtx = mediamtx
        self._mtx: dict[str, _MtxRecording] = {}
        mediamtx.attach_recordings(self)

    # -- queries ---------------------------------------------------------------------------

    def active(self, camera_id: str) -> RecordingInfo | None:
        rec = self._mtx.get(camera_id)
        return rec.info if rec is not None else super().active(camera_id)

    def active_all(self) -> list[RecordingInfo]:
        return [*super().active_all(), *(rec.info for rec in self._mtx.values())]

    def active_files(self) -> set[Path]:
        files = super().active_files()
        for rec in self._mtx.values():
            files.add(rec.info.path)
            files.update(rec.files)
        return files

    # -- start / stop ------------------------------------------------------------------------

    async def start(
        self,
        source: CaptureSource,
        filename: str | None = None,
        format: str = "fmp4",
        duration: int | None = None,
        *,
        reads_device: bool = True,
    ) -> RecordingInfo:
        camera_id = source.camera_id
        if camera_id in self._mtx or super().active(camera_id) is not None:
            raise AlreadyRecording(f"camera {camera_id} is already recording")
        in_mediamtx = format == "fmp4" and filename is None  # MediaMTX names its files
        route = self._mediamtx.recording_route(source, in_mediamtx=in_mediamtx)
        if route == "mediamtx":
            info = await self._start_in_mediamtx(camera_id, duration)
            if info is not None:
                return info
            route = self._mediamtx.recording_route(source)
        if route == "stream":
            stream = self._mediamtx.stream_source(source)
            return await super().start(stream, filename, format, duration, reads_device=False)
        return await super().start(source, filename, format, duration, reads_device=reads_device)

    async def _start_in_mediamtx(
        self, camera_id: str, duration: int | None
    ) -> RecordingInfo | None:
        """Start a MediaMTX recording; None when MediaMTX went away (caller falls back)."""
        now = _utc_now()
        name = generated_filename(camera_id, ".mp4", now)
        info = RecordingInfo(camera_id, name, self.recordings_dir / name, "fmp4", now, duration)
        rec = _MtxRecording(info)
        self._mtx[camera_id] = rec  # reserved before any await: no double start
        try:
            rec.preexisting = set(await self._segments(camera_id))
            await self._mediamtx.begin_recording(camera_id)
        except PathConflictError as exc:
            del self._mtx[camera_id]
            raise MediaError("MediaMTX could not record the camera", exc.detail) from None
        except (MediaMTXUnavailableError, StreamingDisabledError, StreamStateError) as exc:
            del self._mtx[camera_id]
            log.warning("MediaMTX recording of %s not started (%s); FFmpeg records", camera_id, exc)
            return None
        except BaseException:
            del self._mtx[camera_id]
            raise
        rec.watcher = asyncio.create_task(self._watch_segments(rec), name=f"mtx-rec-{camera_id}")
        self._emit(info, "STARTED", duration)
        log.info("recording %s started in MediaMTX (%s)", camera_id, self._mediamtx.recordings_dir)
        return info

    async def _watch_segments(self, rec: _MtxRecording) -> None:
        """Follow the segment files MediaMTX writes; stop a timed recording on time."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + rec.info.duration if rec.info.duration else None
        while True:
            await self._scan_segments(rec)
            if deadline is not None and loop.time() >= deadline:
                self._track(self._stop_mtx(rec, "duration_reached", error=False))
                return
            delay = (
                SEGMENT_SCAN_S if deadline is None else min(SEGMENT_SCAN_S, deadline - loop.time())
            )
            await asyncio.sleep(max(delay, 0.0))

    async def _segments(self, camera_id: str) -> dict[Path, int]:
        return await asyncio.to_thread(segment_files, self.recordings_dir, camera_id)

    async def _scan_segments(self, rec: _MtxRecording) -> None:
        found = await self._segments(rec.info.device)
        rec.files = {path: size for path, size in found.items() if path not in rec.preexisting}
        if rec.files:
            first = min(rec.files)
            if first.name != rec.info.filename:
                rec.info = replace(rec.info, filename=first.name, path=first)

    async def stop(
        self, camera_id: str, reason: str = "stopped", *, error: bool = False
    ) -> RecordingResult:
        rec = self._mtx.get(camera_id)
        if rec is None:
            return await super().stop(camera_id, reason, error=error)
        if rec.stopping:
            raise NotRecording(f"camera {camera_id} is not recording")
        return await self._stop_mtx(rec, reason, error=error)

    async def _stop_mtx(self, rec: _MtxRecording, reason: str, *, error: bool) -> RecordingResult:
        rec.stopping = True
        camera_id = rec.info.device
        if rec.watcher is not None and rec.watcher is not asyncio.current_task():
            rec.watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await rec.watcher
        await self._mediamtx.end_recording(camera_id)
        await self._scan_segments(rec)
        self._mtx.pop(camera_id, None)
        end = _utc_now()
        elapsed = round((end - rec.info.start_time).total_seconds(), 3)
        status = "ERROR" if error else "STOPPED"
        info = rec.info
        result = RecordingResult(
            camera_id, info.filename, info.path, info.format, info.start_time, end, elapsed,
            sum(rec.files.values()), status, reason,
        )  # fmt: skip
        self._emit(info, status, elapsed, reason)
        log.info("recording %s in MediaMTX %s (%s): %s", camera_id, status, reason, info.filename)
        return result

    async def stop_all(self, reason: str = "shutdown") -> list[RecordingResult]:
        ours = await asyncio.gather(
            *(self._stop_mtx(rec, reason, error=False) for rec in list(self._mtx.values())),
            return_exceptions=True,
        )
        results = await super().stop_all(reason)
        return [*results, *(r for r in ours if isinstance(r, RecordingResult))]


_SEGMENT_RE = re.compile(r"^(?P<id>.+)_\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}\.mp4$")


def segment_files(directory: Path, camera_id: str) -> dict[Path, int]:
    """Files named like the camera's recordings: path → size (blocking I/O)."""
    found: dict[Path, int] = {}
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return found
    for entry in entries:
        match = _SEGMENT_RE.match(entry.name)
        if match is None or match.group("id") != camera_id:
            continue
        with contextlib.suppress(OSError):
            found[Path(entry.path)] = entry.stat().st_size
    return found


class StreamSnapshots(SnapshotService):
    """SnapshotService that reads an exclusive camera's stream while MediaMTX holds it."""

    def __init__(self, mediamtx: MediaMTXService, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._mediamtx = mediamtx

    async def take(
        self, source: CaptureSource, filename: str | None = None, format: str = "jpg"
    ) -> SnapshotResult:
        return await super().take(await self._mediamtx.snapshot_source(source), filename, format)
