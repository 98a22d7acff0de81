"""Recording modes, segments, clips and motion events (contract §8.2)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import AwareDatetime, Field

from camera_service.auth.roles import Role
from camera_service.cameras.model import CAMERA_ID_PATTERN
from camera_service.cameras.registry import CameraRegistry
from camera_service.media import clips
from camera_service.media import errors as media_errors
from camera_service.media.nvr import NvrManager, settings_with
from camera_service.rpc.errors import (
    DependencyFailed,
    InsufficientStorage,
    InvalidParams,
    NotFound,
)
from camera_service.rpc.methods.cameras import DeviceParams
from camera_service.rpc.registry import Params, Registry, Result
from camera_service.rpc.session import CallContext
from camera_service.storage import errors as storage_errors
from camera_service.storage import usage
from camera_service.storage.links import DownloadLinks
from camera_service.storage.modes import ModeSettings
from camera_service.storage.names import iso_utc

SEGMENT_KIND = "segments"


class SetModeParams(DeviceParams):
    mode: Literal["off", "continuous", "motion"]
    segment_seconds: int | None = Field(None, ge=10, le=3600, description="Default 60")
    pre_roll: float | None = Field(None, ge=0, le=300, description="Seconds before motion")
    post_roll: float | None = Field(None, ge=0, le=300, description="Seconds after motion")


class RangeParams(Params):
    start: AwareDatetime | None = Field(None, description="ISO 8601 with a zone, e.g. …Z")
    end: AwareDatetime | None = Field(None, description="ISO 8601 with a zone")
    limit: int = Field(100, ge=1, le=10000)
    offset: int = Field(0, ge=0, le=10_000_000)


class ListSegmentsParams(RangeParams):
    device: str = Field(..., pattern=CAMERA_ID_PATTERN, description="Camera id")


class ListEventsParams(RangeParams):
    device: str | None = Field(None, pattern=CAMERA_ID_PATTERN, description="Camera id")


class ExportClipParams(DeviceParams):
    start: AwareDatetime = Field(..., description="ISO 8601 with a zone")
    end: AwareDatetime = Field(..., description="ISO 8601 with a zone")
    format: Literal["mp4", "mkv"] = "mp4"


class RecordingModeResult(Result):
    device: str
    mode: Literal["off", "continuous", "motion"]
    segment_seconds: int
    pre_roll: float
    post_roll: float
    active: bool


class SegmentItem(Result):
    filename: str
    device: str
    start_time: str
    end_time: str
    duration: float
    file_size: int
    download_url: str
    complete: bool


class SegmentList(Result):
    segments: list[SegmentItem]
    total: int


class ClipResultModel(Result):
    filename: str
    device: str
    start_time: str
    end_time: str
    duration: float
    file_size: int
    download_url: str


class EventItem(Result):
    id: str
    device: str
    type: Literal["motion"]
    start_time: str
    end_time: str | None
    peak_score: float
    clip: str | None = None
    clip_url: str | None = None


class EventList(Result):
    events: list[EventItem]
    total: int


@dataclass
class NvrDeps:
    nvr: NvrManager
    cameras: CameraRegistry
    links: DownloadLinks
    block_percent: float
    disk_usage: usage.DiskUsageFn = usage.system_disk_usage


def _epoch(when: datetime | None) -> float | None:
    return when.astimezone(UTC).timestamp() if when is not None else None


@contextlib.contextmanager
def _media_errors(device: str) -> Iterator[None]:
    try:
        yield
    except clips.NoFootage:  # data.id names the camera, as every other -32010 does
        raise NotFound("footage", device) from None
    except (media_errors.InvalidTarget, storage_errors.InvalidFilename) as exc:
        raise InvalidParams("end", str(exc)) from None
    except media_errors.MediaError as exc:
        raise DependencyFailed("ffmpeg", exc.detail or str(exc)) from None


def register(registry: Registry, deps: NvrDeps) -> None:
    nvr = deps.nvr

    def known_camera(device: str) -> None:
        if deps.cameras.get(device) is None:
            raise NotFound("camera", device)

    def camera_or_footage(device: str) -> None:
        if deps.cameras.get(device) is None and not nvr.has_footage(device):
            raise NotFound("camera", device)

    def mode_result(device: str) -> RecordingModeResult:
        return RecordingModeResult.model_validate(nvr.mode_view(device))

    @registry.method(
        "set_recording_mode", params=SetModeParams, result=RecordingModeResult, role=Role.OPERATOR
    )
    async def set_recording_mode(ctx: CallContext, params: SetModeParams) -> RecordingModeResult:
        """Record continuously in segments, around motion, or not; persisted and resumed.

        Resumed after a replug, an FFmpeg crash (with backoff) and a daemon restart."""
        known_camera(params.device)
        settings: ModeSettings = settings_with(
            nvr.settings(params.device),
            mode=params.mode,
            segment_seconds=params.segment_seconds,
            pre_roll=params.pre_roll,
            post_roll=params.post_roll,
        )
        await nvr.set_mode(params.device, settings)
        return mode_result(params.device)

    @registry.method(
        "get_recording_mode", params=DeviceParams, result=RecordingModeResult, role=Role.VIEWER
    )
    async def get_recording_mode(ctx: CallContext, params: DeviceParams) -> RecordingModeResult:
        """The camera's stored recording mode and whether it is recording now."""
        known_camera(params.device)
        return mode_result(params.device)

    @registry.method(
        "list_segments", params=ListSegmentsParams, result=SegmentList, role=Role.VIEWER
    )
    async def list_segments(ctx: CallContext, params: ListSegmentsParams) -> SegmentList:
        """Continuous segments of a camera that overlap [start, end], oldest first."""
        camera_or_footage(params.device)
        _check_range(params.start, params.end)
        found = [
            s
            for s in await nvr.segments(params.device)
            if _overlaps(s.start, s.end, _epoch(params.start), _epoch(params.end))
        ]
        page = found[params.offset : params.offset + params.limit]
        items = [
            SegmentItem(
                filename=s.filename,
                device=s.device,
                start_time=iso_utc(s.start),
                end_time=iso_utc(s.end),
                duration=round(s.duration, 3),
                file_size=s.size,
                download_url=deps.links.url(SEGMENT_KIND, s.filename, ctx.session.host),
                complete=s.complete,
            )
            for s in page
        ]
        return SegmentList(segments=items, total=len(found))

    @registry.method(
        "export_clip", params=ExportClipParams, result=ClipResultModel, role=Role.OPERATOR
    )
    async def export_clip(ctx: CallContext, params: ExportClipParams) -> ClipResultModel:
        """Cut one file from the segments without re-encoding; the clip is a recording.

        It starts on the keyframe at or before ``start``; ``start_time``/``end_time`` say what
        it holds. Listed, downloadable and deletable like any recording."""
        camera_or_footage(params.device)
        start, end = _epoch(params.start), _epoch(params.end)
        assert start is not None and end is not None
        if end <= start:
            raise InvalidParams("end", "must be after start")
        if end - start > 86400:
            raise InvalidParams("end", "a clip spans at most 24 hours")
        try:
            await usage.check_can_write(
                nvr.files.directory("recordings"), deps.block_percent, deps.disk_usage
            )
        except usage.InsufficientStorage as exc:
            raise InsufficientStorage(exc.available_bytes, exc.threshold_bytes) from None
        with _media_errors(params.device):
            result = await nvr.export_clip(params.device, start, end, params.format)
        name = result.path.name
        return ClipResultModel(
            filename=name,
            device=params.device,
            start_time=iso_utc(result.start),
            end_time=iso_utc(result.end),
            duration=round(result.duration, 3),
            file_size=result.size,
            download_url=deps.links.url("recordings", name, ctx.session.host),
        )

    @registry.method("list_events", params=ListEventsParams, result=EventList, role=Role.VIEWER)
    async def list_events(ctx: CallContext, params: ListEventsParams) -> EventList:
        """Motion events of one camera or all, newest first, with the clip cut around each.

        ``clip`` (motion mode) names the recording cut around the event."""
        if params.device is not None:
            camera_or_footage(params.device)
        _check_range(params.start, params.end)
        start, end = _epoch(params.start), _epoch(params.end)
        found = [
            e
            for e in nvr.events.all()
            if (params.device is None or e.device == params.device)
            and _overlaps(e.start, e.end if e.end is not None else e.start, start, end)
        ]
        page = found[params.offset : params.offset + params.limit]
        items = [
            EventItem(
                id=e.id,
                device=e.device,
                type="motion",
                start_time=iso_utc(e.start),
                end_time=iso_utc(e.end) if e.end is not None else None,
                peak_score=e.peak_score,
                clip=e.clip,
                clip_url=deps.links.url("recordings", e.clip, ctx.session.host) if e.clip else None,
            )
            for e in page
        ]
        return EventList(events=items, total=len(found))


def _check_range(start: datetime | None, end: datetime | None) -> None:
    if start is not None and end is not None and end < start:
        raise InvalidParams("end", "must not be before start")


def _overlaps(a0: float, a1: float, start: float | None, end: float | None) -> bool:
    return (start is None or a1 >= start) and (end is None or a0 <= end)
