"""The JSON-RPC methods of the node: each domain's handlers registered with the components
they use (the control methods are registered with the tuning, in ``media.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from camera_service.cameras.model import MAX_CAMERAS
from camera_service.rpc.methods import auth as auth_methods
from camera_service.rpc.methods import cameras as camera_methods
from camera_service.rpc.methods import events as event_methods
from camera_service.rpc.methods import files as file_methods
from camera_service.rpc.methods import integrations as integration_methods
from camera_service.rpc.methods import media as media_methods
from camera_service.rpc.methods import recording_modes as recording_mode_methods
from camera_service.rpc.methods import streams as stream_methods
from camera_service.rpc.methods import system as system_methods
from camera_service.status import HostUsage

if TYPE_CHECKING:
    from camera_service.app import Application

SUPPORTED_FORMATS = {"snapshot": ["jpg", "png"], "recording": ["fmp4", "mp4", "mkv"]}


def register_methods(app: Application) -> media_methods.MediaDeps:
    """Registers every domain but the controls; returns the media deps (kept by the app)."""
    system_methods.register(
        app.registry,
        system_methods.SystemDeps(
            registry=app.registry,
            health=app.health,
            metrics=app.metrics,
            system_status=app.status.system_status,
            capabilities=app.capabilities,
            supported_formats=SUPPORTED_FORMATS,
            max_cameras=MAX_CAMERAS,
            host_usage=HostUsage(app.config.storage.recordings_dir),
            metric_sections={
                "cameras": app.status.camera_metrics,
                "recordings": app.status.recording_metrics,
                "streams": app.mediamtx.metrics_section,
            },
        ),
    )
    auth_methods.register(app.registry, app.authenticator, app.subscribe_defaults)
    event_methods.register(app.registry, app.bus)
    camera_methods.register(
        app.registry,
        camera_methods.CameraDeps(
            cameras=app.cameras,
            external=app.external,
            present=app.status.camera_object,
            stream_metrics=app.mediamtx.stream_metrics,
        ),
    )
    media_deps = media_methods.MediaDeps(
        cameras=app.cameras,
        recordings=app.recordings,
        snapshots=app.snapshots,
        files=app.files,
        links=app.links,
        bus=app.bus,
        block_percent=app.config.storage.block_percent,
    )
    media_methods.register(app.registry, media_deps)
    stream_methods.register(app.registry, app.mediamtx, app.cameras)
    recording_mode_methods.register(
        app.registry,
        recording_mode_methods.NvrDeps(
            nvr=app.nvr,
            cameras=app.cameras,
            links=app.links,
            block_percent=app.config.storage.block_percent,
        ),
    )
    integration_methods.register(
        app.registry,
        integration_methods.IntegrationDeps(
            cameras=app.cameras,
            secret=app.camera_url_secret,
            default_ttl=app.config.http.download_token_ttl,
            base_url=app.links.base_url,
        ),
    )
    file_methods.register(
        app.registry,
        file_methods.FileDeps(
            files=app.files,
            links=app.links,
            policies=app.policies,
            active_files=app.recordings.active_files,
            warn_percent=app.config.storage.warn_percent,
            block_percent=app.config.storage.block_percent,
        ),
    )
    return media_deps


def capabilities(app: Application) -> list[str]:
    """What ``get_server_info`` lists: the fixed features, then tuning's and MediaMTX's."""
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
        *app.tuning.capabilities(),
        *app.mediamtx.capabilities(),
    ]
