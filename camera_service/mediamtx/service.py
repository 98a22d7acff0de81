"""MediaMTX integration: path synchronisation, health and recovery for the whole daemon.

:class:`MediaMTXService` is the one object the application wires in (see ``app.py``). It is
built in layers, one module per concern:

* **Calls** (:mod:`.calls`). :class:`~camera_service.mediamtx.monitor.MediaMTXMonitor`
  probes ``/v3/info`` (backoff with jitter while down, circuit breaker); calls fail fast
  with :class:`MediaMTXUnavailableError` while MediaMTX is down instead of waiting for
  timeouts; the runtime state of every path is cached.
* **Paths** (:mod:`.path_sync`). Every camera has a MediaMTX path configured as it needs
  now, kept so by camera listeners, reconciles (whenever MediaMTX comes up) and a
  maintenance loop; the intents (explicit streaming, recording in MediaMTX) that
  :mod:`.streaming` and :mod:`.recording` change. Ownership:
  ``<state_dir>/mediamtx_paths.json``.
* **Health** (here). Monitor transitions publish ``system_status_update`` on
  ``system.health``; the ``mediamtx`` component and ``stream_metrics`` report our paths;
  MediaMTX's authentication settings are checked whenever it comes up.
* **Single reader** (here). An exclusive (V4L2) device is opened by one process at a time.
  When MediaMTX is up, recordings of exclusive cameras read the camera's RTSP stream
  (:class:`~.recording.StreamRecordings`) and snapshots read the stream while it is live
  (:class:`~.snapshots.StreamSnapshots`), so MediaMTX's publisher stays the only reader.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any
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
from camera_service.mediamtx.client import MediaMTXClient, MediaMTXNotFound
from camera_service.mediamtx.desired import PathSettings
from camera_service.mediamtx.errors import MediaMTXUnavailableError
from camera_service.mediamtx.holder import StreamHolders
from camera_service.mediamtx.path_sync import PathSync
from camera_service.mediamtx.paths import OWNERSHIP_FILE, PathOwnership, path_name_for
from camera_service.mediamtx.segments import record_path
from camera_service.mediamtx.urls import local_rtsp_url, stream_urls
from camera_service.supervise import start_supervised

log = logging.getLogger(__name__)


class MediaMTXService(PathSync):
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
        api_auth = (credentials.api.user, credentials.api.password) if credentials else None
        client = client or MediaMTXClient(
            config.api_url, timeout=config.request_timeout, auth=api_auth
        )
        super().__init__(
            config,
            cameras,
            client,
            settings=PathSettings(
                record_path=record_path(Path(recordings_dir)),
                close_after=config.on_demand_close_after,
                ffmpeg=ffmpeg,
                publisher=credentials.publisher if credentials is not None else None,
            ),
            ownership=PathOwnership(Path(state_dir) / OWNERSHIP_FILE),
        )
        self.ready_timeout = ready_timeout
        self._bus = bus
        self.tokens = tokens
        self.recordings_dir = Path(recordings_dir)
        #: The daemon's HTTP port once it listens (checked against authHTTPAddress).
        self.auth_http_port: int | None = None
        self.auth_problems: list[str] | None = None
        self._local_host = urlsplit(config.api_url).hostname or "127.0.0.1"
        self.holders = StreamHolders(self.local_url, ffmpeg=ffmpeg)
        self._loop_task: asyncio.Task[None] | None = None
        self._was_down = False

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

    def _camera_forgotten(self, camera: Camera) -> None:
        self.intents.forget(camera.id)
        self._spawn(self.holders.release_all(camera.id))
        if self.enabled:
            self._spawn(self.sync_camera(camera.id))

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

    # --- health transitions ---------------------------------------------------------------

    def _publish_health(self, status: str, message: str) -> None:
        params = {"status": status, "message": message, "component": "mediamtx"}
        self._bus.publish(Event("system.health", "system_status_update", params))

    def _went_down(self, reason: str) -> None:
        self._was_down = True
        super()._went_down(reason)
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
