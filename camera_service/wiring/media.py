"""Media components: the FFmpeg supervisor, recordings, snapshots, files and retention,
download links, the live-frame hub and camera URLs, the NVR, the storage guard and the camera
tuning; and where the continuous recorder and the frame reader open a camera."""

from __future__ import annotations

import tempfile
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from camera_service.auth.url_tokens import derive_camera_url_secret
from camera_service.cameras.controls import V4L2IO
from camera_service.cameras.model import CameraStatus
from camera_service.media.ffmpeg import ProcessSupervisor
from camera_service.media.frames import FrameHub
from camera_service.media.nvr import NvrManager
from camera_service.media.process import StopPolicy
from camera_service.media.recorder_env import RecorderEnv
from camera_service.media.recordings import EncoderSettings
from camera_service.media.segment_recordings import NvrRecordings
from camera_service.media.source import CaptureSource, capture_source_for
from camera_service.mediamtx.snapshots import StreamSnapshots
from camera_service.storage.events import EventStore
from camera_service.storage.files import FileStore
from camera_service.storage.guard import StorageGuard
from camera_service.storage.links import DownloadLinks, derive_download_secret
from camera_service.storage.modes import ModeStore
from camera_service.storage.retention import PolicyStore, RetentionLoop
from camera_service.transport.camera_http import CameraHttp
from camera_service.transport.downloads import Downloads
from camera_service.tuning import CameraTuning
from camera_service.wiring.storage import configured_policy, storage_critical

if TYPE_CHECKING:
    from camera_service.app import Application
    from camera_service.rpc.registry import Registry

CONTROL_METHODS = (
    "get_camera_controls",
    "set_camera_controls",
    "reset_camera_controls",
    "get_camera_settings",
    "set_camera_settings",
)


def build_media(app: Application, master_secret: bytes) -> None:
    storage, ffmpeg = app.config.storage, app.config.ffmpeg
    stop_policy = StopPolicy(
        quit_grace=min(ffmpeg.stop_timeout, 4.0), int_grace=2.0, term_grace=1.0, kill_grace=1.0
    )
    app.supervisor = ProcessSupervisor(stop_policy=stop_policy)
    app.recordings = NvrRecordings(
        app.mediamtx,
        app.supervisor,
        storage.recordings_dir,
        EncoderSettings(preset=ffmpeg.preset, bitrate=ffmpeg.bitrate, profile=ffmpeg.profile),
        on_event=app._recording_event,
        ffmpeg=ffmpeg.binary,
        stop_policy=stop_policy,
        start_timeout=ffmpeg.start_timeout,
    )
    app.snapshots = StreamSnapshots(
        app.mediamtx,
        app.supervisor,
        app.recordings,
        storage.snapshots_dir,
        ffmpeg=ffmpeg.binary,
        capture_timeout=ffmpeg.snapshot_timeout,
        warmup_frames=app.config.cameras.warmup_frames,
    )
    app.files = FileStore(
        storage.recordings_dir,
        storage.snapshots_dir,
        ffmpeg.ffprobe,
        max_probes=ffmpeg.max_probes,
    )
    app.policies = PolicyStore(storage.state_dir, default=configured_policy(app.config))
    app.retention = RetentionLoop(
        app.config.retention.interval,
        app.files,
        app.policies,
        active_files=app.recordings.active_files,
    )
    app.links = DownloadLinks(
        derive_download_secret(master_secret),
        app.config.http.download_token_ttl,
        app.config.http.port,
        app.config.http.public_url,
    )
    app.downloads = Downloads(app.files, app.authenticator, app.links.secret)
    app.downloads.add_routes(app.http.app)
    http = app.config.http
    app.frames = FrameHub(
        app.supervisor,
        app.recordings,
        partial(frame_source, app),
        ffmpeg=ffmpeg.binary,
        fps=http.mjpeg_fps,
        quality=http.mjpeg_quality,
        keepalive=http.frame_keepalive,
        max_viewers=http.mjpeg_max_viewers,
        max_frame_bytes=http.max_frame_bytes,
        warmup_frames=app.config.cameras.warmup_frames,
    )
    app.snapshots.live_frame = app.frames.fresh_frame
    app.camera_url_secret = derive_camera_url_secret(master_secret)
    app.camera_http = CameraHttp(
        app.cameras,
        app.frames,
        app.authenticator,
        app.camera_url_secret,
        snapshot_timeout=ffmpeg.snapshot_timeout,
    )
    app.camera_http.add_routes(app.http.app)
    build_nvr(app, stop_policy)
    app.storage_guard = StorageGuard(
        storage.recordings_dir,
        storage.block_percent,
        has_work=lambda: bool(app.recordings.active_all()) or app.nvr.has_work(),
        on_critical=lambda: storage_critical(app),
    )


def build_nvr(app: Application, stop_policy: StopPolicy) -> None:
    storage, ffmpeg = app.config.storage, app.config.ffmpeg
    app._frames_dir = Path(tempfile.mkdtemp(prefix="camera-service-continuous-"))
    env = RecorderEnv(
        supervisor=app.supervisor,
        root=app.config.segments_dir,
        ffmpeg=ffmpeg.binary,
        ffprobe=ffmpeg.ffprobe,
        encoder=EncoderSettings(
            preset=ffmpeg.preset, bitrate=ffmpeg.bitrate, profile=ffmpeg.profile
        ),
        frames_dir=app._frames_dir,
        backoff_base=app.config.continuous.restart_backoff_base,
        backoff_max=app.config.continuous.restart_backoff_max,
        stop_policy=stop_policy,
        frame_rate=app.config.continuous.frame_rate,
    )
    app.nvr = NvrManager(
        config=app.config,
        env=env,
        modes=ModeStore(storage.state_dir),
        events=EventStore(storage.state_dir, app.config.continuous.max_events),
        files=app.files,
        bus=app.bus,
        source_for=partial(continuous_source, app),
        block_percent=storage.block_percent,
        in_use=app.downloads.in_use,
        on_reader_change=lambda camera_id: app._spawn(app.mediamtx.sync_camera(camera_id)),
    )
    app.recordings.frame_sources.append(app.nvr.latest_frame)
    app.recordings.nvr = app.nvr
    app.mediamtx.attach_device_reader(app.nvr.reads_device)
    app.downloads.resolvers["segments"] = app.nvr.segment_path


def build_capture(app: Application, v4l2_io: V4L2IO | None) -> None:
    app.tuning = CameraTuning(
        app.config,
        app.cameras,
        app.supervisor,
        app.recordings,
        app.mediamtx,
        app.bus.publish,
        v4l2_io,
        app.nvr,
    )
    controls, settings = app.tuning.controls, app.tuning.settings

    def load_control_methods(registry: Registry) -> None:
        # Imported at the first control or settings call (see wiring/methods.py).
        from camera_service.rpc.methods import controls as control_methods

        control_methods.register(registry, control_methods.ControlDeps(controls, settings))

    app.registry.add_lazy("controls", CONTROL_METHODS, load_control_methods)


def continuous_source(app: Application, camera_id: str) -> tuple[CaptureSource, bool] | None:
    """What the continuous recorder opens: the device, or the camera's MediaMTX stream
    while MediaMTX publishes a single-reader camera; None while the camera is away."""
    camera = app.cameras.get(camera_id)
    if camera is None or camera.status is not CameraStatus.CONNECTED:
        return None
    try:
        source = capture_source_for(camera)
    except ValueError:
        return None
    if app.recordings.route(source) == "stream":
        return app.mediamtx.stream_source(source), False
    return source, True


async def frame_source(app: Application, camera_id: str) -> tuple[CaptureSource, bool] | None:
    """Where the live-frame reader reads a camera: its device, or its MediaMTX stream
    while MediaMTX's publisher holds an exclusive device."""
    camera = app.cameras.get(camera_id)
    if camera is None or not camera.connected:
        return None
    try:
        source = capture_source_for(camera)
    except ValueError:
        return None
    resolved = await app.snapshots.source_for(source)
    return resolved, resolved is source
