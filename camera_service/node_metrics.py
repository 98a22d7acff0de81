"""Per-camera, storage, MediaMTX, MQTT and event figures for ``/metrics``.

A prometheus-client collector (prometheus_client imported when /metrics is first scraped,
see camera_service/metrics.py): figures are read from the components when Prometheus scrapes
(nothing to keep in sync), except the counters, which follow the event bus. The only
per-series label is the camera id (``camera``); event counts are labelled by topic, a fixed
set. Series of a forgotten camera disappear with it.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from camera_service.cameras.model import Camera, CameraStatus
from camera_service.cameras.registry import CameraRegistry
from camera_service.events import Event, EventBus
from camera_service.media.ffmpeg import ProcessSupervisor
from camera_service.media.frames import FrameHub
from camera_service.media.recordings import RecordingManager

if TYPE_CHECKING:
    from prometheus_client.core import Metric

STATUS_VALUE = {
    CameraStatus.CONNECTED: 1.0,
    CameraStatus.DISCONNECTED: 0.0,
    CameraStatus.ERROR: -1.0,
}


@dataclass
class NodeSources:
    cameras: CameraRegistry
    recordings: RecordingManager
    supervisor: ProcessSupervisor
    frames: FrameHub
    recordings_dir: Path
    stream_readers: Callable[[Camera], int | None]
    mediamtx_up: Callable[[], bool | None]  # None: MediaMTX disabled
    mqtt: Callable[[], dict[str, float] | None]  # None: MQTT disabled


class NodeCollector:
    def __init__(self, sources: NodeSources, bus: EventBus) -> None:
        self._s = sources
        self.events: Counter[str] = Counter()
        self.snapshots: Counter[str] = Counter()
        self.url_snapshots: Counter[str] = Counter()
        self.recorded_bytes: Counter[str] = Counter()  # finished recordings
        bus.add_listener(self._on_event)

    # -- counting ----------------------------------------------------------------------------

    def snapshot_served(self, camera_id: str) -> None:
        self.url_snapshots[camera_id] += 1

    def forget(self, camera_id: str) -> None:
        for counter in (self.snapshots, self.url_snapshots, self.recorded_bytes):
            counter.pop(camera_id, None)

    def _on_event(self, event: Event) -> None:
        self.events[event.topic] += 1
        device = event.device or event.params.get("device")
        if not isinstance(device, str):
            return
        if event.topic == "snapshot.taken":
            self.snapshots[device] += 1
        elif event.method == "recording_status_update" and event.params.get("status") in (
            "STOPPED",
            "ERROR",
        ):
            filename = str(event.params.get("filename") or "")
            if filename:  # one stat of a finished file: cheap enough for the listener
                self.recorded_bytes[device] += _size(self._s.recordings_dir / filename)

    # -- scrape ------------------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        # prometheus_client is imported at the first scrape (camera_service/metrics.py).
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        s = self._s
        cams = s.cameras.list()
        status = GaugeMetricFamily(
            "camera_service_camera_status",
            "Camera status: 1 connected, 0 disconnected, -1 error",
            labels=["camera"],
        )
        recording = GaugeMetricFamily(
            "camera_service_camera_recording", "1 while the camera records", labels=["camera"]
        )
        written = CounterMetricFamily(
            "camera_service_camera_recorded_bytes",
            "Bytes of recordings written for the camera (finished and in progress)",
            labels=["camera"],
        )
        snapshots = CounterMetricFamily(
            "camera_service_camera_snapshots", "Snapshot files taken", labels=["camera"]
        )
        url_snaps = CounterMetricFamily(
            "camera_service_camera_snapshot_url_requests",
            "Images served by /cameras/{camera}/snapshot.jpg",
            labels=["camera"],
        )
        failures = CounterMetricFamily(
            "camera_service_camera_ffmpeg_failures",
            "FFmpeg processes of the camera that ended with an error on their own",
            labels=["camera"],
        )
        restarts = CounterMetricFamily(
            "camera_service_camera_ffmpeg_restarts",
            "Restarts of the camera's live-frame reader after it failed",
            labels=["camera"],
        )
        readers = GaugeMetricFamily(
            "camera_service_camera_stream_readers",
            "Readers of the camera's MediaMTX stream (last poll)",
            labels=["camera"],
        )
        viewers = GaugeMetricFamily(
            "camera_service_camera_mjpeg_viewers", "Open MJPEG viewers", labels=["camera"]
        )
        active = {info.device: info for info in s.recordings.active_all()}
        for cam in cams:
            label = [cam.id]
            status.add_metric(label, STATUS_VALUE.get(cam.status, 0.0))
            info = active.get(cam.id)
            recording.add_metric(label, 1.0 if info is not None else 0.0)
            current = _size(info.path) if info is not None else 0
            written.add_metric(label, float(self.recorded_bytes[cam.id] + current))
            snapshots.add_metric(label, float(self.snapshots[cam.id]))
            url_snaps.add_metric(label, float(self.url_snapshots[cam.id]))
            failures.add_metric(label, float(s.supervisor.unexpected_exits[cam.id]))
            restarts.add_metric(label, float(s.frames.restarts(cam.id)))
            count = s.stream_readers(cam)
            if count is not None:
                readers.add_metric(label, float(count))
            viewers.add_metric(label, float(s.frames.viewers(cam.id)))
        yield from (status, recording, written, snapshots, url_snaps, failures, restarts)
        yield from (readers, viewers)
        yield from self._storage()
        up = s.mediamtx_up()
        mtx = GaugeMetricFamily("camera_service_mediamtx_up", "1 while MediaMTX answers")
        if up is not None:
            mtx.add_metric([], 1.0 if up else 0.0)
        yield mtx
        events = CounterMetricFamily(
            "camera_service_events", "Events published on the bus", labels=["topic"]
        )
        for topic, n in sorted(self.events.items()):
            events.add_metric([topic], float(n))
        yield events
        yield from self._mqtt()

    def _storage(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        try:
            usage = shutil.disk_usage(self._s.recordings_dir)  # one statvfs call
        except OSError:
            return
        used = usage.total - usage.free
        pairs = [
            (
                "camera_service_storage_total_bytes",
                "Size of the recordings file system",
                usage.total,
            ),
            ("camera_service_storage_used_bytes", "Used bytes on it", used),
            ("camera_service_storage_free_bytes", "Free bytes on it", usage.free),
        ]
        for name, doc, value in pairs:
            yield GaugeMetricFamily(name, doc, value=float(value))
        percent = 100.0 * used / usage.total if usage.total else 0.0
        yield GaugeMetricFamily(
            "camera_service_storage_used_percent", "Used percent of it", value=round(percent, 3)
        )

    def _mqtt(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        figures = self._s.mqtt()
        if figures is None:
            return
        yield GaugeMetricFamily(
            "camera_service_mqtt_connected", "1 while connected", value=figures["connected"]
        )
        yield CounterMetricFamily(
            "camera_service_mqtt_published", "Messages published", value=figures["published"]
        )
        yield CounterMetricFamily(
            "camera_service_mqtt_dropped", "Messages dropped (queue full)", value=figures["dropped"]
        )


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def mqtt_figures(bridge: Any) -> dict[str, float] | None:
    if bridge is None:
        return None
    return {
        "connected": 1.0 if bridge.connected.is_set() else 0.0,
        "published": float(bridge.published),
        "dropped": float(bridge.dropped),
    }
