"""Snapshot and recording methods: FFmpeg reads the camera directly (no MediaMTX needed)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import Field

from camera_service.auth.roles import Role
from camera_service.cameras.model import Camera, CameraStatus
from camera_service.cameras.registry import CameraRegistry
from camera_service.events import Event, EventBus
from camera_service.media import errors as media_errors
from camera_service.media.recordings import RecordingManager
from camera_service.media.snapshots import SnapshotService
from camera_service.media.source import capture_source_for
from camera_service.mediamtx.errors import MediaMTXUnavailableError
from camera_service.rpc.errors import (
    DependencyFailed,
    InsufficientStorage,
    InvalidParams,
    InvalidState,
    NotFound,
    public_detail,
)
from camera_service.rpc.methods.cameras import DeviceParams, camera_or_error
from camera_service.rpc.registry import Registry, Result
from camera_service.rpc.session import CallContext
from camera_service.storage import errors as storage_errors
from camera_service.storage import names as storage_names
from camera_service.storage import usage
from camera_service.storage.faults import writable_problem
from camera_service.storage.files import FileStore
from camera_service.storage.links import DownloadLinks
from camera_service.storage.names import FILENAME_PATTERN


class SnapshotParams(DeviceParams):
    filename: str | None = Field(None, pattern=FILENAME_PATTERN, description="Without a path")
    format: Literal["jpg", "png"] = "jpg"


class StartRecordingParams(DeviceParams):
    duration: int | None = Field(None, ge=1, le=86400, description="Stop after this many s")
    format: Literal["fmp4", "mp4", "mkv"] = "fmp4"


class SnapshotResult(Result):
    device: str
    filename: str
    status: Literal["SUCCESS"]
    timestamp: str
    file_size: int
    download_url: str


class StartRecordingResult(Result):
    device: str
    filename: str
    status: Literal["RECORDING"]
    start_time: str
    format: str
    duration: int | None


class StopRecordingResult(Result):
    device: str
    filename: str
    status: Literal["STOPPED"]
    start_time: str
    end_time: str
    duration: float
    file_size: int
    format: str


@dataclass
class MediaDeps:
    cameras: CameraRegistry
    recordings: RecordingManager
    snapshots: SnapshotService
    files: FileStore
    links: DownloadLinks
    bus: EventBus
    block_percent: float
    disk_usage: usage.DiskUsageFn = usage.system_disk_usage


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@contextlib.contextmanager
def translated_media_errors(device: str, directory: Path | None = None) -> Iterator[None]:
    """Media and storage exceptions → catalog errors (``directory``: where FFmpeg writes,
    measured when it reports a full disk)."""
    try:
        yield
    except media_errors.AlreadyRecording:
        raise InvalidState(
            f"Camera {device} is already recording.", "RECORDING", ["IDLE"]
        ) from None
    except media_errors.NotRecording:
        raise InvalidState(f"Camera {device} is not recording.", "IDLE", ["RECORDING"]) from None
    except media_errors.DeviceBusy as exc:
        raise InvalidState(f"Camera {device} is busy: {exc}.", "BUSY", ["IDLE"]) from None
    except (media_errors.InvalidTarget, storage_errors.InvalidFilename) as exc:
        raise InvalidParams("filename", str(exc), "choose another name") from None
    except media_errors.MediaError as exc:
        detail = exc.detail or str(exc)
        if "No space left on device" in detail or "Disk quota exceeded" in detail:
            raise _full(directory) from None
        if "Read-only file system" in detail:
            raise DependencyFailed("storage", "the file system is read-only") from None
        raise DependencyFailed("ffmpeg", detail) from None
    except MediaMTXUnavailableError as exc:  # recording in MediaMTX: not ready, not written
        raise DependencyFailed("mediamtx", exc.detail) from None
    except usage.InsufficientStorage as exc:
        raise InsufficientStorage(exc.available_bytes, exc.threshold_bytes) from None


def _full(directory: Path | None) -> InsufficientStorage:
    """-32060 for a write FFmpeg saw refused: the measured free space of ``directory``."""
    free, threshold = 0, 1
    if directory is not None:
        with contextlib.suppress(OSError):
            measured = usage.system_disk_usage(directory)
            free = measured.free
            threshold = max(usage.block_threshold_bytes(measured, 95.0), free + 1)
    return InsufficientStorage(free, threshold)


def register(registry: Registry, deps: MediaDeps) -> None:
    async def writable(directory_kind: Literal["recordings", "snapshots"]) -> None:
        directory = deps.files.directory(directory_kind)
        problem = await asyncio.to_thread(writable_problem, directory)
        if problem is not None:
            raise DependencyFailed("storage", f"{directory_kind} directory: {problem}")
        with translated_media_errors(""):
            await usage.check_can_write(directory, deps.block_percent, deps.disk_usage)

    def connected_camera(device: str) -> Camera:
        camera = camera_or_error(deps.cameras, device)
        if camera.status is not CameraStatus.CONNECTED:
            raise InvalidState(
                f"Camera {device} is {camera.status.value}.", camera.status.value, ["CONNECTED"]
            )
        return camera

    @contextlib.contextmanager
    def vanished_is_not_found(device: str) -> Iterator[None]:
        """A camera removed while the call ran (remove_external_stream, unplug) is -32010,
        whatever error the capture itself ended with."""
        try:
            yield
        except Exception:
            if deps.cameras.get(device) is None:
                raise NotFound("camera", device) from None
            raise

    @registry.method(
        "take_snapshot", params=SnapshotParams, result=SnapshotResult, role=Role.OPERATOR
    )
    async def take_snapshot(ctx: CallContext, params: SnapshotParams) -> SnapshotResult:
        """Capture one frame as jpg (default) or png; never opens a busy device twice."""
        connected_camera(params.device)
        await writable("snapshots")
        # Re-read after the await: the camera may have been removed meanwhile.
        source = capture_source_for(connected_camera(params.device))
        snapshots_dir = deps.files.directory("snapshots")
        with (
            vanished_is_not_found(params.device),
            translated_media_errors(params.device, snapshots_dir),
        ):
            if params.filename:
                storage_names.validate_filename(params.filename)
            shot = await deps.snapshots.take(source, params.filename, params.format)
        if params.filename:
            await deps.files.register("snapshots", shot.filename, params.device)
        url = deps.links.url("snapshots", shot.filename, ctx.session.host)
        deps.bus.publish(
            Event(
                "snapshot.taken",
                "snapshot_taken",
                {
                    "device": params.device,
                    "filename": shot.filename,
                    "file_size": shot.size,
                    "download_url": url,
                },
                device=params.device,
                personal=deps.links.personal_url("snapshots", shot.filename),
            )
        )
        return SnapshotResult(
            device=params.device,
            filename=shot.filename,
            status="SUCCESS",
            timestamp=_iso(shot.timestamp),
            file_size=shot.size,
            download_url=url,
        )

    @registry.method(
        "start_recording",
        params=StartRecordingParams,
        result=StartRecordingResult,
        role=Role.OPERATOR,
    )
    async def start_recording(
        ctx: CallContext, params: StartRecordingParams
    ) -> StartRecordingResult:
        """Start a server-side recording (continues if the client disconnects)."""
        connected_camera(params.device)
        await writable("recordings")
        source = capture_source_for(connected_camera(params.device))
        recordings_dir = deps.files.directory("recordings")
        with (
            vanished_is_not_found(params.device),
            translated_media_errors(params.device, recordings_dir),
        ):
            info = await deps.recordings.start(source, None, params.format, params.duration)
        return StartRecordingResult(
            device=info.device,
            filename=info.filename,
            status="RECORDING",
            start_time=_iso(info.start_time),
            format=info.format,
            duration=info.duration,
        )

    @registry.method(
        "stop_recording", params=DeviceParams, result=StopRecordingResult, role=Role.OPERATOR
    )
    async def stop_recording(ctx: CallContext, params: DeviceParams) -> StopRecordingResult:
        """Stop the camera's recording and finalize the file."""
        camera_or_error(deps.cameras, params.device)
        with translated_media_errors(params.device):
            result = await deps.recordings.stop(params.device)
        return StopRecordingResult(
            device=result.device,
            filename=result.filename,
            status="STOPPED",
            start_time=_iso(result.start_time),
            end_time=_iso(result.end_time),
            duration=round(result.duration, 3),
            file_size=result.file_size,
            format=result.format,
        )


def recording_event(event: dict[str, object]) -> Event:
    """A RecordingManager event dict → the recording_status_update notification."""
    topic = {"STARTED": "recording.start", "STOPPED": "recording.stop"}.get(
        str(event.get("status")), "recording.error"
    )
    device = str(event.get("device"))
    params = dict(event)
    reason = params.get("reason")
    if isinstance(reason, str):  # FFmpeg's last words when it failed
        params["reason"] = public_detail(reason)
    return Event(topic, "recording_status_update", params, device=device)


__all__ = ["MediaDeps", "NotFound", "recording_event", "register"]
