"""Health and readiness: the component probes behind ``/health*`` and ``get_status``, and
what must have happened before the node reports ready."""

from __future__ import annotations

from typing import TYPE_CHECKING

from camera_service.health import ComponentStatus
from camera_service.storage.faults import FfmpegHealth, StorageHealth

if TYPE_CHECKING:
    from camera_service.app import Application


def register_health(app: Application) -> None:
    health = app.health
    health.register("websocket_server", lambda: websocket_health(app))
    health.register("camera_monitor", app.status.camera_health)
    health.register("mediamtx", app._mediamtx_health, required=app.config.mediamtx.required)
    storage, ffmpeg = app.config.storage, app.config.ffmpeg
    directories = {
        "recordings": storage.recordings_dir,
        "snapshots": storage.snapshots_dir,
        "state": storage.state_dir,
    }
    health.register(
        "storage",
        StorageHealth(directories, storage.warn_percent, storage.block_percent).probe,
    )
    health.register("ffmpeg", FfmpegHealth(ffmpeg.binary, ffmpeg.ffprobe).probe)
    health.require_ready("websocket_listening", app.listening)
    health.require_ready("first_camera_scan", app.discovery.first_scan_done)


def websocket_health(app: Application) -> ComponentStatus:
    if not app.listening.is_set():
        return ComponentStatus("starting", {"listening": False})
    return ComponentStatus(
        "healthy",
        {
            "listening": True,
            "connections": app.metrics.open_connections,
            "port": app.ws.port,
        },
    )
