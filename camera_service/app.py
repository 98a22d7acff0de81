"""Composition root: the only place that knows every component. Builds them from the config,
starts them in order, stops them in reverse, and handles SIGTERM/SIGINT/SIGHUP."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import shutil
import signal
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web

from camera_service import __version__
from camera_service import logging as service_logging
from camera_service.auth.api_keys import ApiKeyStore, looks_like_api_key
from camera_service.auth.daemon_credentials import CREDENTIALS_FILE, load_or_create_credentials
from camera_service.auth.identity import AuthError, Identity
from camera_service.auth.jwt import JwtAuthority, load_or_create_secret
from camera_service.auth.service import Authenticator, FailedAuthLimiter
from camera_service.auth.stream_access import AccessPolicy, is_ip_address
from camera_service.auth.stream_tokens import StreamTokens, derive_stream_secret
from camera_service.auth.url_tokens import derive_camera_url_secret
from camera_service.cameras.controls import V4L2IO
from camera_service.cameras.device_events import EventSource
from camera_service.cameras.discovery import Discovery, create_discovery
from camera_service.cameras.external import ExternalStreamStore
from camera_service.cameras.model import MAX_CAMERAS, Camera, CameraStatus
from camera_service.cameras.probing import Prober
from camera_service.cameras.registry import CameraIdError, CameraRegistry
from camera_service.cameras.v4l2 import V4L2Prober
from camera_service.config import Config, ConfigError, load_config
from camera_service.eventloop import running_loop_name
from camera_service.events import DEFAULT_TOPICS, Event, EventBus
from camera_service.fsutil import StateFileError
from camera_service.health import ComponentStatus, Health
from camera_service.media.continuous import RecorderEnv
from camera_service.media.errors import NotRecording
from camera_service.media.ffmpeg import ProcessSupervisor
from camera_service.media.frames import FrameHub
from camera_service.media.nvr import NvrManager
from camera_service.media.process import StopPolicy
from camera_service.media.recordings import EncoderSettings
from camera_service.media.segment_recordings import NvrRecordings
from camera_service.media.source import CaptureSource, capture_source_for
from camera_service.mediamtx.service import MediaMTXService
from camera_service.mediamtx.snapshots import StreamSnapshots
from camera_service.metrics import Metrics
from camera_service.mqtt.topics import default_node_id
from camera_service.node_metrics import NodeCollector, NodeSources, mqtt_figures
from camera_service.resources import install_accept_error_handler, raise_fd_limit
from camera_service.rpc.dispatch import Dispatcher
from camera_service.rpc.methods import auth as auth_methods
from camera_service.rpc.methods import cameras as camera_methods
from camera_service.rpc.methods import controls as control_methods
from camera_service.rpc.methods import events as event_methods
from camera_service.rpc.methods import files as file_methods
from camera_service.rpc.methods import integrations as integration_methods
from camera_service.rpc.methods import media as media_methods
from camera_service.rpc.methods import recording_modes as recording_mode_methods
from camera_service.rpc.methods import streams as stream_methods
from camera_service.rpc.methods import system as system_methods
from camera_service.rpc.registry import Registry
from camera_service.rpc.session import Session
from camera_service.sdnotify import SystemdNotifier, watchdog_loop
from camera_service.status import HostUsage, NodeStatus
from camera_service.storage.events import EventStore
from camera_service.storage.faults import FfmpegHealth, StorageHealth
from camera_service.storage.files import FileStore
from camera_service.storage.guard import StorageGuard
from camera_service.storage.links import DownloadLinks, derive_download_secret
from camera_service.storage.modes import ModeStore
from camera_service.storage.retention import PolicyStore, RetentionLoop, RetentionPolicy
from camera_service.storage.usage import storage_info, system_disk_usage
from camera_service.supervise import start_supervised
from camera_service.transport.camera_http import CameraHttp
from camera_service.transport.downloads import Downloads
from camera_service.transport.http import HttpServer
from camera_service.transport.mediamtx_auth import StreamAuthEndpoint
from camera_service.transport.websocket import WebSocketServer
from camera_service.tuning import CameraTuning

if TYPE_CHECKING:
    from camera_service.mqtt.bridge import MqttBridge

log = logging.getLogger(__name__)

SHUTDOWN_BUDGET_S = 9.0
RELOADABLE_KEYS = frozenset({"logging.level", "server.allowed_origins"})
SESSION_SWEEP_INTERVAL_S = 1.0
SUPPORTED_FORMATS = {"snapshot": ["jpg", "png"], "recording": ["fmp4", "mp4", "mkv"]}
ROLLOVER_HEADROOM_PERCENT = 2.0  # delete_oldest frees down to block_percent minus this


class StartupError(Exception):
    """The daemon cannot start; the message is the one log line an operator needs."""


@dataclass
class ReloadReport:
    applied: list[str]
    needs_restart: list[str]


def secret_bytes(config: Config) -> bytes:
    if config.auth.jwt_secret is not None:
        return config.auth.jwt_secret.get_secret_value().encode()
    path = config.jwt_secret_file
    try:
        return load_or_create_secret(path)
    except UnicodeDecodeError:
        problem = "not UTF-8 text"
    except ValueError as exc:
        problem = str(exc).replace(f" in {path}", "")
    except OSError as exc:
        problem = f"cannot be read or created ({exc.strerror or exc})"
    raise StartupError(
        f"state file {path} is unusable: {problem}; restore it from a backup, or remove it "
        "to generate a new secret (every JWT issued so far then stops working)"
    )


class Application:
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
        self._prepare_state_dir()
        secret = secret_bytes(config)
        self.jwt = JwtAuthority(secret)
        try:
            self.keys = ApiKeyStore(config.api_keys_file)
        except StateFileError as exc:
            raise StartupError(str(exc)) from None
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
        self._build_cameras(event_source, prober)
        self._build_stream_auth(secret)
        self.mediamtx = MediaMTXService.from_config(
            config,
            self.cameras,
            self.bus,
            credentials=self.mtx_credentials if self.stream_auth else None,
            tokens=self.stream_tokens if self.stream_auth else None,
        )
        self._build_media(secret)
        self._build_capture(v4l2_io)
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
        self._register_health()
        self.mqtt = self._build_mqtt()
        self.node_metrics = self._build_node_metrics()

    # --- construction -------------------------------------------------------------------

    def _prepare_state_dir(self) -> None:
        state = self.config.storage.state_dir
        try:
            state.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StartupError(f"cannot create state directory {state}: {exc.strerror}") from exc

    def _register_methods(self) -> None:
        system_methods.register(
            self.registry,
            system_methods.SystemDeps(
                registry=self.registry,
                health=self.health,
                metrics=self.metrics,
                system_status=self.status.system_status,
                capabilities=self.capabilities,
                supported_formats=SUPPORTED_FORMATS,
                max_cameras=MAX_CAMERAS,
                host_usage=HostUsage(self.config.storage.recordings_dir),
                metric_sections={
                    "cameras": self.status.camera_metrics,
                    "recordings": self.status.recording_metrics,
                    "streams": self.mediamtx.metrics_section,
                },
            ),
        )
        auth_methods.register(self.registry, self.authenticator, self.subscribe_defaults)
        event_methods.register(self.registry, self.bus)
        camera_methods.register(
            self.registry,
            camera_methods.CameraDeps(
                cameras=self.cameras,
                external=self.external,
                present=self.status.camera_object,
                stream_metrics=self.mediamtx.stream_metrics,
            ),
        )
        self.media_deps = media_methods.MediaDeps(
            cameras=self.cameras,
            recordings=self.recordings,
            snapshots=self.snapshots,
            files=self.files,
            links=self.links,
            bus=self.bus,
            block_percent=self.config.storage.block_percent,
        )
        media_methods.register(self.registry, self.media_deps)
        stream_methods.register(self.registry, self.mediamtx, self.cameras)
        recording_mode_methods.register(
            self.registry,
            recording_mode_methods.NvrDeps(
                nvr=self.nvr,
                cameras=self.cameras,
                links=self.links,
                block_percent=self.config.storage.block_percent,
            ),
        )
        integration_methods.register(
            self.registry,
            integration_methods.IntegrationDeps(
                cameras=self.cameras,
                secret=self.camera_url_secret,
                default_ttl=self.config.http.download_token_ttl,
                base_url=self.links.base_url,
            ),
        )
        file_methods.register(
            self.registry,
            file_methods.FileDeps(
                files=self.files,
                links=self.links,
                policies=self.policies,
                active_files=self.recordings.active_files,
                warn_percent=self.config.storage.warn_percent,
                block_percent=self.config.storage.block_percent,
            ),
        )

    def _build_cameras(self, source: EventSource | None, prober: Prober | None) -> None:
        cfg = self.config.cameras
        self.cameras = CameraRegistry(
            forget_after=cfg.forget_after,
            default_resolution=cfg.default_resolution,
            default_fps=cfg.default_fps,
        )
        self.cameras.add_listener(self._camera_changed)
        self.cameras.add_forget_listener(self._camera_forgotten)
        self.external = ExternalStreamStore(self.config.storage.state_dir)
        if source is not None or cfg.discovery == "off":
            self.discovery = Discovery(
                source,
                prober or V4L2Prober(),
                self.cameras,
                probe_timeout=cfg.probe_timeout,
                probe_retries=cfg.probe_retries,
            )
        else:
            self.discovery = create_discovery(
                self.cameras,
                mode=cfg.discovery,
                poll_interval=cfg.poll_interval,
                probe_timeout=cfg.probe_timeout,
                probe_retries=cfg.probe_retries,
            )

    def _build_stream_auth(self, master_secret: bytes) -> None:
        """Stream access control: MediaMTX asks POST /mediamtx/auth before every session."""
        cfg = self.config.mediamtx
        try:
            self.mtx_credentials = load_or_create_credentials(
                self.config.storage.state_dir / CREDENTIALS_FILE
            )
        except StateFileError as exc:
            raise StartupError(str(exc)) from None
        self.stream_tokens = StreamTokens(derive_stream_secret(master_secret), cfg.stream_token_ttl)
        keys, jwt = self.keys, self.jwt

        def verify(credential: str) -> Identity:  # no I/O: the endpoint refreshed the keys
            if looks_like_api_key(credential):
                return keys.verify(credential, refresh=False)
            return jwt.verify(credential)

        policy = AccessPolicy(
            credentials=self.mtx_credentials,
            tokens=self.stream_tokens,
            verify=verify,
            key_active=lambda key_id: keys.is_active(key_id, refresh=False),
            known_path=lambda name: self.cameras.get(name) is not None,
        )
        api_host = urlsplit(cfg.api_url).hostname or ""
        clients = [*cfg.auth_clients, *([api_host] if is_ip_address(api_host) else [])]
        self.stream_auth: StreamAuthEndpoint | None = None
        if cfg.enabled and cfg.stream_auth:
            self.stream_auth = StreamAuthEndpoint(
                policy,
                self.authenticator.limiter,
                self.keys,
                allowed_clients=clients,
                metrics=self.metrics,
            )
            self.stream_auth.add_routes(self.http.app)

    def _kick_revoked_sessions(self) -> None:
        """MediaMTX checks credentials at session start only: close the sessions opened
        with an API key that has been revoked since (the key store was just refreshed)."""
        if self.stream_auth is None:
            return
        revoked = self.stream_auth.ledger.take_revoked(
            lambda key_id: self.keys.is_active(key_id, refresh=False)
        )
        for protocol, session_id in revoked:
            self._spawn(self.mediamtx.kick(protocol, session_id))

    def _build_media(self, master_secret: bytes) -> None:
        storage, ffmpeg = self.config.storage, self.config.ffmpeg
        stop_policy = StopPolicy(
            quit_grace=min(ffmpeg.stop_timeout, 4.0), int_grace=2.0, term_grace=1.0, kill_grace=1.0
        )
        self.supervisor = ProcessSupervisor(stop_policy=stop_policy)
        self.recordings = NvrRecordings(
            self.mediamtx,
            self.supervisor,
            storage.recordings_dir,
            EncoderSettings(preset=ffmpeg.preset, bitrate=ffmpeg.bitrate, profile=ffmpeg.profile),
            on_event=self._recording_event,
            ffmpeg=ffmpeg.binary,
            stop_policy=stop_policy,
            start_timeout=ffmpeg.start_timeout,
        )
        self.snapshots = StreamSnapshots(
            self.mediamtx,
            self.supervisor,
            self.recordings,
            storage.snapshots_dir,
            ffmpeg=ffmpeg.binary,
            capture_timeout=ffmpeg.snapshot_timeout,
            warmup_frames=self.config.cameras.warmup_frames,
        )
        self.files = FileStore(
            storage.recordings_dir,
            storage.snapshots_dir,
            ffmpeg.ffprobe,
            max_probes=ffmpeg.max_probes,
        )
        self.policies = PolicyStore(storage.state_dir, default=self._configured_policy())
        self.retention = RetentionLoop(
            self.config.retention.interval,
            self.files,
            self.policies,
            active_files=self.recordings.active_files,
        )
        self.links = DownloadLinks(
            derive_download_secret(master_secret),
            self.config.http.download_token_ttl,
            self.config.http.port,
            self.config.http.public_url,
        )
        self.downloads = Downloads(self.files, self.authenticator, self.links.secret)
        self.downloads.add_routes(self.http.app)
        http = self.config.http
        self.frames = FrameHub(
            self.supervisor,
            self.recordings,
            self._frame_source,
            ffmpeg=ffmpeg.binary,
            fps=http.mjpeg_fps,
            quality=http.mjpeg_quality,
            keepalive=http.frame_keepalive,
            max_viewers=http.mjpeg_max_viewers,
            max_frame_bytes=http.max_frame_bytes,
            warmup_frames=self.config.cameras.warmup_frames,
        )
        self.snapshots.live_frame = self.frames.fresh_frame
        self.camera_url_secret = derive_camera_url_secret(master_secret)
        self.camera_http = CameraHttp(
            self.cameras,
            self.frames,
            self.authenticator,
            self.camera_url_secret,
            snapshot_timeout=ffmpeg.snapshot_timeout,
        )
        self.camera_http.add_routes(self.http.app)
        self._build_nvr(stop_policy)
        self.storage_guard = StorageGuard(
            storage.recordings_dir,
            storage.block_percent,
            has_work=lambda: bool(self.recordings.active_all()) or self.nvr.has_work(),
            on_critical=self._storage_critical,
        )

    def _build_nvr(self, stop_policy: StopPolicy) -> None:
        storage, ffmpeg = self.config.storage, self.config.ffmpeg
        self._frames_dir = Path(tempfile.mkdtemp(prefix="camera-service-continuous-"))
        env = RecorderEnv(
            supervisor=self.supervisor,
            root=self.config.segments_dir,
            ffmpeg=ffmpeg.binary,
            ffprobe=ffmpeg.ffprobe,
            encoder=EncoderSettings(
                preset=ffmpeg.preset, bitrate=ffmpeg.bitrate, profile=ffmpeg.profile
            ),
            frames_dir=self._frames_dir,
            backoff_base=self.config.continuous.restart_backoff_base,
            backoff_max=self.config.continuous.restart_backoff_max,
            stop_policy=stop_policy,
            frame_rate=self.config.continuous.frame_rate,
        )
        self.nvr = NvrManager(
            config=self.config,
            env=env,
            modes=ModeStore(storage.state_dir),
            events=EventStore(storage.state_dir, self.config.continuous.max_events),
            files=self.files,
            bus=self.bus,
            source_for=self._continuous_source,
            block_percent=storage.block_percent,
            in_use=self.downloads.in_use,
            on_reader_change=self._reader_changed,
        )
        self.recordings.frame_sources.append(self.nvr.latest_frame)
        self.recordings.nvr = self.nvr
        self.mediamtx.attach_device_reader(self.nvr.reads_device)
        self.downloads.resolvers["segments"] = self.nvr.segment_path

    def _continuous_source(self, camera_id: str) -> tuple[CaptureSource, bool] | None:
        """What the continuous recorder opens: the device, or the camera's MediaMTX stream
        while MediaMTX publishes a single-reader camera; None while the camera is away."""
        camera = self.cameras.get(camera_id)
        if camera is None or camera.status is not CameraStatus.CONNECTED:
            return None
        try:
            source = capture_source_for(camera)
        except ValueError:
            return None
        if self.recordings.route(source) == "stream":
            return self.mediamtx.stream_source(source), False
        return source, True

    def _reader_changed(self, camera_id: str) -> None:
        self._spawn(self.mediamtx.sync_camera(camera_id))

    def _build_capture(self, v4l2_io: V4L2IO | None) -> None:
        self.tuning = CameraTuning(
            self.config,
            self.cameras,
            self.supervisor,
            self.recordings,
            self.mediamtx,
            self.bus.publish,
            v4l2_io,
            self.nvr,
        )
        control_methods.register(
            self.registry, control_methods.ControlDeps(self.tuning.controls, self.tuning.settings)
        )

    async def _frame_source(self, camera_id: str) -> tuple[CaptureSource, bool] | None:
        """Where the live-frame reader reads a camera: its device, or its MediaMTX stream
        while MediaMTX's publisher holds an exclusive device."""
        camera = self.cameras.get(camera_id)
        if camera is None or not camera.connected:
            return None
        try:
            source = capture_source_for(camera)
        except ValueError:
            return None
        resolved = await self.snapshots.source_for(source)
        return resolved, resolved is source

    def _build_node_metrics(self) -> NodeCollector:
        mtx = self.mediamtx
        collector = NodeCollector(
            NodeSources(
                cameras=self.cameras,
                recordings=self.recordings,
                supervisor=self.supervisor,
                frames=self.frames,
                recordings_dir=self.config.storage.recordings_dir,
                stream_readers=lambda cam: (
                    mtx.stream_metrics(cam).get("readers", 0) if mtx.enabled else None
                ),
                mediamtx_up=lambda: mtx.monitor.is_up if mtx.enabled else None,
                mqtt=lambda: mqtt_figures(self.mqtt),
            ),
            self.bus,
        )
        self.metrics.registry.register(collector)
        self.cameras.add_forget_listener(lambda camera: collector.forget(camera.id))
        self.camera_http.on_snapshot = collector.snapshot_served
        return collector

    def _build_mqtt(self) -> MqttBridge | None:
        cfg = self.config.mqtt
        if not cfg.enabled:
            return None
        # Imported here: aiomqtt (and paho) cost ~4 MB of RSS that MQTT-less nodes never use.
        from camera_service.mqtt.bridge import BridgeDeps, MqttBridge

        rate = self.config.server.rate_limit
        return MqttBridge(
            cfg,
            cfg.node_id or default_node_id(),
            self.bus,
            self.dispatcher,
            BridgeDeps(
                cameras=lambda: [self.status.camera_object(c) for c in self.cameras.list()],
                recording=self._recording_summary,
                storage=self._storage_state,
                snapshot_path=lambda name: self.config.storage.snapshots_dir / name,
                takes_device=self._takes_device,
            ),
            rate=(rate.per_second, rate.burst) if rate.enabled else None,
        )

    def _recording_summary(self, camera_id: str) -> dict[str, Any] | None:
        info = self.recordings.active(camera_id)
        if info is None:
            return None
        return {
            "filename": info.filename,
            "format": info.format,
            "start_time": info.start_time.isoformat().replace("+00:00", "Z"),
            "duration": info.duration,
        }

    async def _storage_state(self) -> dict[str, Any]:
        storage = self.config.storage
        info = await storage_info(
            storage.recordings_dir,
            storage.snapshots_dir,
            storage.warn_percent,
            storage.block_percent,
        )
        return dict(info)

    def _takes_device(self, method: str) -> bool:
        spec = self.registry.get(method)
        return spec is not None and "device" in spec.params.model_fields

    def _configured_policy(self) -> RetentionPolicy:
        cfg = self.config.retention
        return RetentionPolicy(
            policy_type=cfg.policy_type,
            max_age_days=cfg.max_age_days,
            max_size_gb=cfg.max_size_gb,
            enabled=cfg.enabled,
        )

    def _register_health(self) -> None:
        self.health.register("websocket_server", self._websocket_health)
        self.health.register("camera_monitor", self.status.camera_health)
        self.health.register(
            "mediamtx", self._mediamtx_health, required=self.config.mediamtx.required
        )
        storage, ffmpeg = self.config.storage, self.config.ffmpeg
        directories = {
            "recordings": storage.recordings_dir,
            "snapshots": storage.snapshots_dir,
            "state": storage.state_dir,
        }
        self.health.register(
            "storage",
            StorageHealth(directories, storage.warn_percent, storage.block_percent).probe,
        )
        self.health.register("ffmpeg", FfmpegHealth(ffmpeg.binary, ffmpeg.ffprobe).probe)
        self.health.require_ready("websocket_listening", self.listening)
        self.health.require_ready("first_camera_scan", self.discovery.first_scan_done)

    def _mediamtx_health(self) -> ComponentStatus:
        return self.mediamtx.health()

    def _websocket_health(self) -> ComponentStatus:
        if not self.listening.is_set():
            return ComponentStatus("starting", {"listening": False})
        return ComponentStatus(
            "healthy",
            {
                "listening": True,
                "connections": self.metrics.open_connections,
                "port": self.ws.port,
            },
        )

    # --- providers used by methods --------------------------------------------------------

    def subscribe_defaults(self, session: Session) -> None:
        self.bus.subscribe(session, DEFAULT_TOPICS)

    def capabilities(self) -> list[str]:
        return [
            "json-rpc-2.0",
            "batches",
            "notifications",
            "api-keys",
            "jwt",
            "camera-discovery",
            "snapshots",
            "recordings",
            "file-downloads",
            "retention",
            "external-streams",
            "continuous-recording",
            "motion-events",
            "clips",
            *self.tuning.capabilities(),
            *self.mediamtx.capabilities(),
        ]

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

    async def _storage_critical(self) -> None:
        """At block_percent: delete the oldest continuous segments (``when_full:
        delete_oldest``); when that frees nothing, or with ``stop``, stop recording."""
        storage = self.config.storage
        if storage.when_full == "delete_oldest":
            usage = await asyncio.to_thread(system_disk_usage, storage.recordings_dir)
            target = usage.total * (storage.block_percent - ROLLOVER_HEADROOM_PERCENT) / 100
            count, _freed = await self.nvr.rollover(max(int(usage.used - target), 1))
            if count:
                return
        for info in self.recordings.active_all():
            await self._stop_recording(info.device, "storage_critical")
        if self.nvr.has_work():
            log.warning("storage critical: continuous recording paused until there is room")
            await self.nvr.pause_all()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        self._load_cameras()
        self.files.ensure_dirs()
        # Owed mp4 remuxes and stale frame directories of a crashed run (media/remux.py).
        self.recordings.start_recovery()
        await self._listen(
            "WebSocket", self.config.server.host, self.config.server.port, self.ws.start
        )
        self.listening.set()
        await self._listen("HTTP", self.config.http.host, self.config.http.port, self._start_http)
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
        self._tasks.append(start_supervised("session-sweep", self._sweep_sessions))
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

    async def _client_config(self, request: web.Request) -> web.Response:
        """Where the browser client finds the WebSocket (it is served from the HTTP port)."""
        return web.json_response(
            {
                "ws_port": self.ws.port,
                "ws_path": self.config.server.path,
                "tls": self.config.server.tls.enabled,
            }
        )

    def _load_cameras(self) -> None:
        sources = [s.model_dump() for s in self.config.cameras.sources]
        self.cameras.load_configured(sources)
        for stream in self.external.list():
            try:
                self.cameras.add_external(stream.stream_name, stream.stream_url, stream.stream_type)
            except CameraIdError as exc:
                log.error("external stream %s not loaded: %s", stream.stream_name, exc)

    async def _start_http(self) -> None:
        self.http.app.router.add_get("/client-config.json", self._client_config)
        self.http.add_client_routes()
        await self.http.start()

    async def _listen(self, what: str, host: str, port: int, starter: Callable[[], Any]) -> None:
        try:
            await starter()
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise StartupError(f"cannot listen for {what} on {host}:{port}: {reason}") from None

    async def _notify_ready(self) -> None:
        await self.health.wait_ready()
        self.notifier.ready(f"listening on :{self.ws.port} (ws) and :{self.http.port} (http)")

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

    def publish_system(self, topic: str, status: str, message: str) -> None:
        params = {"status": status, "message": message}
        self.bus.publish(Event(topic, "system_status_update", params))

    async def _sweep_sessions(self) -> None:
        """Drop notifications to sessions whose JWT expired or whose key was revoked."""
        while True:
            await asyncio.sleep(SESSION_SWEEP_INTERVAL_S)
            self.keys.refresh_if_changed()
            self._kick_revoked_sessions()
            for session in list(self.ws.sessions.values()):
                if session.identity is None:
                    continue
                try:
                    self.authenticator.recheck(session.identity, refresh=False)
                except AuthError:
                    self.bus.drop(session.subscriber_id)

    # --- signals and reload ---------------------------------------------------------------

    def reload(self) -> ReloadReport:
        """SIGHUP: apply what can change safely at run time, report the rest."""
        self.keys.reload()
        self.policies.reload()
        applied = ["auth.api_keys", "retention.policy"]
        try:
            fresh, _ = load_config(self.config_path)
        except ConfigError as exc:
            log.error("reload: configuration rejected, keeping the running one: %s", exc)
            return ReloadReport(applied, [])
        changed = changed_keys(self.config, fresh)
        if "logging.level" in changed:
            service_logging.set_level(fresh.logging.level)
        if "server.allowed_origins" in changed:
            origins = fresh.server.allowed_origins
            self.ws.config = self.ws.config.model_copy(update={"allowed_origins": origins})
        applied += sorted(changed & RELOADABLE_KEYS)
        needs_restart = sorted(changed - RELOADABLE_KEYS)
        logging_config = self.config.logging.model_copy(update={"level": fresh.logging.level})
        self.config = self.config.model_copy(
            update={"server": self.ws.config, "logging": logging_config}
        )
        log.info(
            "configuration reloaded", extra={"applied": applied, "needs_restart": needs_restart}
        )
        return ReloadReport(applied, needs_restart)

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
        self._tasks.append(asyncio.create_task(self._notify_ready(), name="sd-ready"))
        try:
            await self.stop_requested.wait()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.stop(), SHUTDOWN_BUDGET_S)


def changed_keys(old: Config, new: Config) -> set[str]:
    """Dotted `section.key` names whose values differ."""
    before, after = old.model_dump(mode="json"), new.model_dump(mode="json")
    return {
        f"{section}.{key}"
        for section, values in after.items()
        for key, value in values.items()
        if before[section].get(key) != value
    }
