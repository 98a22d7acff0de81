"""The JSON-RPC methods of the node: each domain's handlers registered with the components
they use (the control methods are registered with the tuning, in ``media.py``).

What every client calls at once (system, auth, events, cameras, media) is registered at
start. The other domains are registered lazily (``Registry.add_lazy``): their handler module
is imported at the first call of one of their methods, or by ``rpc.discover``, so a node
whose clients never list files, stream or set a recording mode does not load them. Their
method names are listed here; the registry checks each loader registers exactly those."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from camera_service.cameras.model import MAX_CAMERAS
from camera_service.rpc.methods import auth as auth_methods
from camera_service.rpc.methods import cameras as camera_methods
from camera_service.rpc.methods import events as event_methods
from camera_service.rpc.methods import media as media_methods
from camera_service.rpc.methods import system as system_methods
from camera_service.status import HostUsage

if TYPE_CHECKING:
    from camera_service.app import Application
    from camera_service.rpc.registry import Registry

FILE_METHODS = (
    "list_recordings",
    "list_snapshots",
    "get_recording_info",
    "get_snapshot_info",
    "delete_recording",
    "delete_snapshot",
    "get_storage_info",
    "set_retention_policy",
    "get_retention_policy",
    "cleanup_old_files",
)
STREAM_METHODS = (
    "get_streams",
    "get_stream_url",
    "get_stream_status",
    "start_streaming",
    "stop_streaming",
)
RECORDING_MODE_METHODS = (
    "set_recording_mode",
    "get_recording_mode",
    "list_segments",
    "list_events",
    "export_clip",
)
INTEGRATION_METHODS = ("get_camera_urls",)

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
    app.registry.add_lazy("streams", STREAM_METHODS, _streams(app))
    app.registry.add_lazy("recording modes", RECORDING_MODE_METHODS, _recording_modes(app))
    app.registry.add_lazy("integrations", INTEGRATION_METHODS, _integrations(app))
    app.registry.add_lazy("files", FILE_METHODS, _files(app))
    return media_deps


# The loaders: the components are taken now (at registration), the handler module is
# imported when the loader runs (see the module's doc).


def _streams(app: Application) -> Callable[[Registry], None]:
    mediamtx, cameras = app.mediamtx, app.cameras

    def load(registry: Registry) -> None:
        from camera_service.rpc.methods import streams

        streams.register(registry, mediamtx, cameras)

    return load


def _recording_modes(app: Application) -> Callable[[Registry], None]:
    nvr, cameras, links = app.nvr, app.cameras, app.links
    block_percent = app.config.storage.block_percent

    def load(registry: Registry) -> None:
        from camera_service.rpc.methods import recording_modes as modes

        deps = modes.NvrDeps(nvr=nvr, cameras=cameras, links=links, block_percent=block_percent)
        modes.register(registry, deps)

    return load


def _integrations(app: Application) -> Callable[[Registry], None]:
    cameras, secret = app.cameras, app.camera_url_secret
    default_ttl, base_url = app.config.http.download_token_ttl, app.links.base_url

    def load(registry: Registry) -> None:
        from camera_service.rpc.methods import integrations

        deps = integrations.IntegrationDeps(
            cameras=cameras, secret=secret, default_ttl=default_ttl, base_url=base_url
        )
        integrations.register(registry, deps)

    return load


def _files(app: Application) -> Callable[[Registry], None]:
    files, links, policies = app.files, app.links, app.policies
    active_files, storage = app.recordings.active_files, app.config.storage

    def load(registry: Registry) -> None:
        from camera_service.rpc.methods import files as file_methods

        deps = file_methods.FileDeps(
            files=files,
            links=links,
            policies=policies,
            active_files=active_files,
            warn_percent=storage.warn_percent,
            block_percent=storage.block_percent,
        )
        file_methods.register(registry, deps)

    return load


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
