"""Read-only views of the camera node: camera objects, discovery readiness, camera and
recording metrics, the camera_monitor health component."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from camera_service.auth.identity import Identity
from camera_service.cameras.discovery import Discovery
from camera_service.cameras.model import Camera, CameraStatus
from camera_service.cameras.registry import CameraRegistry
from camera_service.cpu_baseline import HostCpuBaseline
from camera_service.health import ComponentStatus
from camera_service.media.ffmpeg import ProcessSupervisor
from camera_service.media.recordings import RecordingManager
from camera_service.mediamtx.service import MediaMTXService
from camera_service.storage.usage import DiskUsageFn, system_disk_usage, usage_percent


class NodeStatus:
    def __init__(
        self,
        cameras: CameraRegistry,
        discovery: Discovery,
        recordings: RecordingManager,
        supervisor: ProcessSupervisor,
        mediamtx: MediaMTXService,
        *,
        discovery_enabled: bool,
    ) -> None:
        self.cameras = cameras
        self.discovery = discovery
        self.recordings = recordings
        self.supervisor = supervisor
        self.mediamtx = mediamtx
        self.discovery_enabled = discovery_enabled

    def camera_object(self, camera: Camera, identity: Identity | None = None) -> dict[str, Any]:
        """The public camera object, plus the recording in progress (null when idle).

        ``identity``: the caller, to whom the stream URLs' tokens are issued (notifications
        carry tokens issued to nobody in particular)."""
        active = self.recordings.active(camera.id)
        recording = None
        if active is not None:
            recording = {
                "filename": active.filename,
                "start_time": active.start_time.isoformat(timespec="milliseconds"),
                "duration": active.duration,
                "format": active.format,
            }
        streams = self.mediamtx.streams_for(camera, identity)
        return {**camera.public_dict(streams), "recording": recording}

    def _discovery_lost(self) -> bool:
        return self.discovery_enabled and not self.discovery.active

    def camera_health(self) -> ComponentStatus:
        details = {**self.discovery.status(), **self.cameras.counts()}
        if not self.discovery.first_scan_done.is_set():
            return ComponentStatus("starting", details)
        if self._discovery_lost():
            return ComponentStatus("degraded", details)
        errors = [c.id for c in self.cameras.list() if c.status is CameraStatus.ERROR]
        if errors:
            return ComponentStatus("degraded", {**details, "cameras_in_error": errors})
        return ComponentStatus("healthy", details)

    def system_status(self) -> dict[str, Any]:
        """get_system_status: starting until the first scan, partial with cameras in error or
        discovery lost, ready otherwise."""
        cameras = self.cameras.list()
        connected = [c.id for c in cameras if c.status is CameraStatus.CONNECTED]
        available = len(connected)
        errors = sum(1 for c in cameras if c.status is CameraStatus.ERROR)
        if not self.discovery.first_scan_done.is_set():
            status, message = "starting", "first camera scan in progress"
        elif errors or self._discovery_lost():
            mode = self.discovery.mode
            status, message = "partial", f"{errors} camera(s) in error; discovery: {mode}"
        else:
            status, message = "ready", f"{available} camera(s) available"
        return {
            "status": status,
            "message": message,
            "available_cameras": connected,
            "camera_count": available,
            "discovery_active": self.discovery.active,
            "counts": self.cameras.counts(),
        }

    def camera_metrics(self, admin: bool) -> dict[str, Any]:
        """Device paths only for admins (get_metrics is the one place they may appear)."""
        per_camera = {
            c.id: {
                "status": c.status.value,
                "kind": c.kind.value,
                "error": c.error,
                **({"device_path": c.device_path} if admin and c.device_path else {}),
            }
            for c in self.cameras.list()
        }
        return {
            "total": len(per_camera),
            "discovery": self.discovery.status(),
            "cameras": per_camera,
        }

    def recording_metrics(self, admin: bool) -> dict[str, Any]:
        active = self.recordings.active_all()
        return {
            "active": len(active),
            "recordings": [
                {
                    "device": r.device,
                    "filename": r.filename,
                    "format": r.format,
                    "start_time": r.start_time.isoformat(),
                }
                for r in active
            ],
            "ffmpeg_processes": len(self.supervisor.all()),
        }


class HostUsage:
    """get_metrics.system_metrics cpu_usage / memory_usage / disk_usage: host-wide percent
    (CPU since the previous call, memory in use, the recordings file system)."""

    def __init__(self, disk_path: Path, disk_usage: DiskUsageFn = system_disk_usage) -> None:
        self.disk_path = disk_path
        self.disk_usage = disk_usage
        # psutil is imported at the first call; until then this baseline measures (the
        # first psutil reading only starts its measurement).
        self._cpu_baseline: HostCpuBaseline | None = HostCpuBaseline()

    def _cpu_percent(self) -> float:
        import psutil

        cpu = psutil.cpu_percent(None)
        if self._cpu_baseline is not None:
            first, self._cpu_baseline = self._cpu_baseline.percent(), None
            cpu = first if first is not None else cpu
        return float(cpu)

    def __call__(self) -> dict[str, float]:
        import psutil

        try:
            disk = usage_percent(self.disk_usage(self.disk_path))
        except OSError:
            disk = 100.0
        return {
            "cpu_usage": self._cpu_percent(),
            "memory_usage": float(psutil.virtual_memory().percent),
            "disk_usage": disk,
        }
