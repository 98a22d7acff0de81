"""The node's Prometheus collector (cameras, recordings, FFmpeg, frames, streams, MQTT),
added to the node's metrics and fed by camera and snapshot events."""

from __future__ import annotations

from typing import TYPE_CHECKING

from camera_service.node_metrics import NodeCollector, NodeSources, mqtt_figures

if TYPE_CHECKING:
    from camera_service.app import Application


def build_node_metrics(app: Application) -> NodeCollector:
    mtx = app.mediamtx
    collector = NodeCollector(
        NodeSources(
            cameras=app.cameras,
            recordings=app.recordings,
            supervisor=app.supervisor,
            frames=app.frames,
            recordings_dir=app.config.storage.recordings_dir,
            stream_readers=lambda cam: (
                mtx.stream_metrics(cam).get("readers", 0) if mtx.enabled else None
            ),
            mediamtx_up=lambda: mtx.monitor.is_up if mtx.enabled else None,
            mqtt=lambda: mqtt_figures(app.mqtt),
        ),
        app.bus,
    )
    app.metrics.add_collector(collector)
    app.cameras.add_forget_listener(lambda camera: collector.forget(camera.id))
    app.camera_http.on_snapshot = collector.snapshot_served
    return collector
