"""Composition root: the only place that knows every component. Builds them from the config,
starts them in order, stops them in reverse, and handles SIGTERM/SIGINT/SIGHUP.

How each concern is built or run lives in ``camera_service/wiring/`` (one module each); the
order of construction, start and stop is here, in :class:`Application`."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import shutil
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from camera_service import __version__
from camera_service.auth.api_keys import ApiKeyStore
from camera_service.auth.daemon_credentials import DaemonCredentials
from camera_service.auth.jwt import JwtAuthority
from camera_service.auth.service import Authenticator, FailedAuthLimiter
from camera_service.auth.stream_tokens import StreamTokens
from camera_service.cameras.controls import V4L2IO
from camera_service.cameras.device_events import EventSource
from camera_service.cameras.discovery import Discovery
from camera_service.cameras.external import ExternalStreamStore
from camera_service.cameras.model import Camera, CameraStatus
from camera_service.cameras.probing import Prober
from camera_service.cameras.registry import CameraRegistry
from camera_service.config import Config
from camera_service.eventloop import running_loop_name
from camera_service.events import DEFAULT_TOPICS, Event, EventBus
from camera_service.health import ComponentStatus, Health
from camera_service.media.errors import NotRecording
from camera_service.media.ffmpeg import ProcessSupervisor
from camera_service.media.frames import FrameHub
from camera_service.media.nvr import NvrManager
from camera_service.media.segment_recordings import NvrRecordings
from camera_service.mediamtx.service import MediaMTXService
from camera_service.mediamtx.snapshots import StreamSnapshots
from camera_service.metrics import Metrics
from camera_service.resources import install_accept_error_handler, raise_fd_limit
from camera_service.rpc.dispatch import Dispatcher
from camera_service.rpc.methods import media as media_methods
from camera_service.rpc.registry import Registry
from camera_service.rpc.session import Session
from camera_service.sdnotify import SystemdNotifier, watchdog_loop
from camera_service.status import NodeStatus
from camera_service.storage.files import FileStore
from camera_service.storage.guard import StorageGuard
from camera_service.storage.links import DownloadLinks
from camera_service.storage.retention import PolicyStore, RetentionLoop
from camera_service.supervise import start_supervised
from camera_service.transport.camera_http import CameraHttp
from camera_service.transport.downloads import Downloads
from camera_service.transport.http import HttpServer
from camera_service.transport.websocket import WebSocketServer
from camera_service.tuning import CameraTuning
from camera_service.wiring import cameras as camera_wiring
from camera_service.wiring import health as health_wiring
from camera_service.wiring import loops, methods
from camera_service.wiring import media as media_wiring
from camera_service.wiring import reload as reload_wiring
from camera_service.wiring.http import start_http
from camera_service.wiring.metrics import build_node_metrics
from camera_service.wiring.mqtt import build_mqtt
from camera_service.wiring.reload import ReloadReport
from camera_service.wiring.startup import (
    StartupError,
    listen,
    open_key_store,
    prepare_state_dir,
    secret_bytes,
)
from camera_service.wiring.stream_auth import build_stream_auth

if TYPE_CHECKING:
    from camera_service.mqtt.bridge import MqttBridge
    from camera_service.transport.mediamtx_auth import StreamAuthEndpoint

__all__ = ["Application", "ReloadReport", "StartupError", "secret_bytes"]

log = logging.getLogger(__name__)

SHUTDOWN_BUDGET_S = 9.0


class Application:
    # Components built by camera_service/wiring/ (cameras.py, stream_auth.py, media.py).
    cameras: CameraRegistry
    external: ExternalStreamStore
    discovery: Discovery
    mtx_credentials: DaemonCredentials
    stream_tokens: StreamTokens
    stream_auth: StreamAuthEndpoint | None
    supervisor: ProcessSupervisor
    recordings: NvrRecordings
    snapshots: StreamSnapshots
    files: FileStore
    policies: PolicyStore
    retention: RetentionLoop
    links: DownloadLinks
    downloads: Downloads
    frames: FrameHub
    camera_url_secret: bytes
    camera_http: CameraHttp
    nvr: NvrManager
    storage_guard: StorageGuard
    tuning: CameraTuning
    _frames_dir: Path

    def __init__(
        self,
        config: Config,
        config_path: Path | None = None,
        *,
        event_source: EventSource | None = None,
        prober: Prober | None = None,
        v4l2_io: V4L2IO | None = None,
    ) -> None:
        """`event_source`/`prober`/`v4l2_io`: the discovery seam (tests inject fake V4L2
        devices: capabilities, and the control ioctls)."""
        self.config = config
        self.config_path = config_path
        self.metrics = Metrics()
        self.bus = EventBus()
        self.health = Health()
        self.registry = Registry()
        prepare_state_dir(config.storage.state_dir)
        secret = secret_bytes(config)
        self.jwt = JwtAuthority(secret)
        self.keys: ApiKeyStore = open_key_store(config.api_keys_file)
        self.authenticator = Authenticator(
            self.jwt,
            self.keys,
            FailedAuthLimiter(config.auth.failed_auth_limit, config.auth.failed_auth_window),
        )
        self.dispatcher = Dispatcher(
            self.registry,
            self.authenticator,
            self.metrics,
            config.server.max_batch,
            unauthenticated_batch_bytes=config.server.unauthenticated_queue_bytes,
        )
        self.ws = WebSocketServer(config.server, self.dispatcher, self.bus, self.metrics)
        self.http = HttpServer(config.http, self.health, self.metrics)
        camera_wiring.build_cameras(self, event_source, prober)
        build_stream_auth(self, secret)
        self.mediamtx = MediaMTXService.from_config(
            config,
            self.cameras,
            self.bus,
            credentials=self.mtx_credentials if self.stream_auth else None,
            tokens=self.stream_tokens if self.stream_auth else None,
        )
        self._build_media(secret)
        media_wiring.build_capture(self, v4l2_io)
        self.status = NodeStatus(
            self.cameras,
            self.discovery,
            self.recordings,
            self.supervisor,
            self.mediamtx,
            discovery_enabled=config.cameras.discovery != "off",
        )
        self.notifier = SystemdNotifier.from_env()
        self.stop_requested = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self.listening = asyncio.Event()
        self.after_start: list[Callable[[], None]] = []
        self._register_methods()
        health_wiring.register_health(self)
        self.mqtt: MqttBridge | None = build_mqtt(self)
        self.node_metrics = build_node_metrics(self)

    # --- construction steps (tests extend these) ------------------------------------------

    def _build_media(self, master_secret: bytes) -> None:
        media_wiring.build_media(self, master_secret)

    def _register_methods(self) -> None:
        self.media_deps = methods.register_methods(self)

    def _mediamtx_health(self) -> ComponentStatus:
        return self.mediamtx.health()

    # --- providers used by methods --------------------------------------------------------

    def subscribe_defaults(self, session: Session) -> None:
        self.bus.subscribe(session, DEFAULT_TOPICS)

    def capabilities(self) -> list[str]:
        return methods.capabilities(self)

    # --- events ---------------------------------------------------------------------------

    def _camera_changed(self, camera: Camera, topic: str) -> None:
        params = self.status.camera_object(camera)
        self.bus.publish(Event(topic, "camera_status_update", params, device=camera.id))
        self.nvr.camera_changed(camera.id, camera.status is CameraStatus.CONNECTED)
        if camera.status is not CameraStatus.CONNECTED and self.recordings.active(camera.id):
            self._spawn(self._stop_recording(camera.id, "camera_disconnected"))

    def _camera_forgotten(self, camera: Camera) -> None:
        """Past forget_after (or an external stream removed): clients drop the camera."""
        params = {**self.status.camera_object(camera), "forgotten": True}
        self.bus.publish(
            Event("camera.disconnected", "camera_status_update", params, device=camera.id)
        )

    async def _recording_event(self, event: dict[str, Any]) -> None:
        self.bus.publish(media_methods.recording_event(event))

    async def _stop_recording(self, camera_id: str, reason: str) -> None:
        try:
            await self.recordings.stop(camera_id, reason, error=reason != "storage_critical")
        except NotRecording:
            # Stopped meanwhile (a stop_recording call, FFmpeg ending): nothing left to do.
            log.debug("recording of %s already stopped (%s)", camera_id, reason)
        except Exception:
            log.exception("could not stop recording of %s (%s)", camera_id, reason)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def publish_system(self, topic: str, status: str, message: str) -> None:
        params = {"status": status, "message": message}
        self.bus.publish(Event(topic, "system_status_update", params))

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        camera_wiring.load_cameras(self)
        self.files.ensure_dirs()
        # Owed mp4 remuxes and stale frame directories of a crashed run (media/remux.py).
        self.recordings.start_recovery()
        await listen("WebSocket", self.config.server.host, self.config.server.port, self.ws.start)
        self.listening.set()
        await listen("HTTP", self.config.http.host, self.config.http.port, lambda: start_http(self))
        self.links.http_port = self.http.port
        self.mediamtx.auth_http_port = self.http.port
        self.tuning.start()
        await self.discovery.start()
        await self.mediamtx.start()
        await self.nvr.start()
        self.retention.start()
        self.storage_guard.start()
        if self.mqtt is not None:
            self.mqtt.start()
        self._tasks.append(start_supervised("session-sweep", lambda: loops.sweep_sessions(self)))
        self._tasks.append(start_supervised("watchdog", lambda: watchdog_loop(self.notifier)))
        self.publish_system("system.startup", "started", f"camera-service {__version__} started")
        log.info(
            "camera-service started",
            extra={
                "ws_port": self.ws.port,
                "http_port": self.http.port,
                "version": __version__,
                "event_loop": running_loop_name(),
            },
        )
        for hook in self.after_start:
            hook()
        # Objects built at start-up live as long as the process: keep them out of the
        # collector's generations so full collections stay short (fan-out p99).
        gc.freeze()

    async def stop(self) -> None:
        """Stop accepting, finish in-flight calls, close sockets with 1001."""
        self.notifier.stopping("shutting down")
        self.health.stopping = True
        self.ws.stop_accepting()
        self.publish_system("system.shutdown", "stopping", "camera-service is shutting down")
        # Calls in progress finish first: they may need the FFmpeg processes stopped below.
        await self.ws.drain_inflight(SHUTDOWN_BUDGET_S / 3)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.storage_guard.stop()
        await self.retention.stop()
        await self.discovery.stop()
        await self.nvr.stop()
        await self.tuning.close()
        await self.frames.close()
        await self.recordings.stop_all("shutdown")
        if self.mqtt is not None:
            await self.mqtt.stop()
        await self.mediamtx.stop()
        await self.supervisor.shutdown()
        await self.ws.stop(timeout=SHUTDOWN_BUDGET_S / 3)
        await self.http.stop()
        self.cameras.close()
        await asyncio.to_thread(shutil.rmtree, self._frames_dir, True)
        log.info("camera-service stopped")

    # --- signals and reload ---------------------------------------------------------------

    def reload(self) -> ReloadReport:
        """SIGHUP: apply what can change safely at run time, report the rest."""
        return reload_wiring.reload(self)

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop_requested.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)

    async def run(self) -> None:
        self.install_signal_handlers()
        raise_fd_limit()
        install_accept_error_handler(asyncio.get_running_loop())
        await self.start()
        self._tasks.append(asyncio.create_task(loops.notify_ready(self), name="sd-ready"))
        try:
            await self.stop_requested.wait()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.stop(), SHUTDOWN_BUDGET_S)
