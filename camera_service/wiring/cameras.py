"""Camera registry, run-time stream store and discovery, built from ``cameras`` config; the
configured sources and stored external streams loaded at start."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from camera_service.cameras.device_events import EventSource
from camera_service.cameras.discovery import Discovery, create_discovery
from camera_service.cameras.external import ExternalStreamStore
from camera_service.cameras.probing import Prober
from camera_service.cameras.registry import CameraIdError, CameraRegistry
from camera_service.cameras.v4l2 import V4L2Prober

if TYPE_CHECKING:
    from camera_service.app import Application

log = logging.getLogger("camera_service.app")  # the daemon's own lines keep one logger


def build_cameras(app: Application, source: EventSource | None, prober: Prober | None) -> None:
    cfg = app.config.cameras
    app.cameras = CameraRegistry(
        forget_after=cfg.forget_after,
        default_resolution=cfg.default_resolution,
        default_fps=cfg.default_fps,
    )
    app.cameras.add_listener(app._camera_changed)
    app.cameras.add_forget_listener(app._camera_forgotten)
    app.external = ExternalStreamStore(app.config.storage.state_dir)
    if source is not None or cfg.discovery == "off":
        app.discovery = Discovery(
            source,
            prober or V4L2Prober(),
            app.cameras,
            probe_timeout=cfg.probe_timeout,
            probe_retries=cfg.probe_retries,
        )
    else:
        app.discovery = create_discovery(
            app.cameras,
            mode=cfg.discovery,
            poll_interval=cfg.poll_interval,
            probe_timeout=cfg.probe_timeout,
            probe_retries=cfg.probe_retries,
        )


def load_cameras(app: Application) -> None:
    sources = [s.model_dump() for s in app.config.cameras.sources]
    app.cameras.load_configured(sources)
    for stream in app.external.list():
        try:
            app.cameras.add_external(stream.stream_name, stream.stream_url, stream.stream_type)
        except CameraIdError as exc:
            log.error("external stream %s not loaded: %s", stream.stream_name, exc)
