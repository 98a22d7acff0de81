"""The MQTT bridge (when ``mqtt.enabled``) and the views of the node it publishes: cameras,
the running recording, storage, and which commands name a device."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from camera_service.storage.usage import storage_info

if TYPE_CHECKING:
    from camera_service.app import Application
    from camera_service.mqtt.bridge import MqttBridge


def build_mqtt(app: Application) -> MqttBridge | None:
    cfg = app.config.mqtt
    if not cfg.enabled:
        return None
    # Imported here: aiomqtt (and paho) cost ~4 MB of RSS that MQTT-less nodes never use,
    # and the topic tables ~0.3 MB more.
    from camera_service.mqtt.bridge import BridgeDeps, MqttBridge
    from camera_service.mqtt.topics import default_node_id

    rate = app.config.server.rate_limit
    return MqttBridge(
        cfg,
        cfg.node_id or default_node_id(),
        app.bus,
        app.dispatcher,
        BridgeDeps(
            cameras=lambda: [app.status.camera_object(c) for c in app.cameras.list()],
            recording=lambda camera_id: recording_summary(app, camera_id),
            storage=lambda: storage_state(app),
            snapshot_path=lambda name: app.config.storage.snapshots_dir / name,
            takes_device=lambda method: takes_device(app, method),
        ),
        rate=(rate.per_second, rate.burst) if rate.enabled else None,
    )


def recording_summary(app: Application, camera_id: str) -> dict[str, Any] | None:
    info = app.recordings.active(camera_id)
    if info is None:
        return None
    return {
        "filename": info.filename,
        "format": info.format,
        "start_time": info.start_time.isoformat().replace("+00:00", "Z"),
        "duration": info.duration,
    }


async def storage_state(app: Application) -> dict[str, Any]:
    storage = app.config.storage
    info = await storage_info(
        storage.recordings_dir,
        storage.snapshots_dir,
        storage.warn_percent,
        storage.block_percent,
    )
    return dict(info)


def takes_device(app: Application, method: str) -> bool:
    spec = app.registry.get(method)
    return spec is not None and "device" in spec.params.model_fields
