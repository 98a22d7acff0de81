"""Manual recordings of a camera whose device the continuous recorder holds.

A single-reader camera recorded continuously from its device (MediaMTX down or disabled)
cannot be opened by a second FFmpeg. ``start_recording`` then needs no process at all: the
footage is already being written as segments, so the recording is a time range that is kept
from roll-over while it runs and cut into the recording's file (no re-encoding, see
media/clips.py) when it stops. Everything else (events, timed stops, camera disconnects,
shutdown) behaves as for an FFmpeg recording.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from camera_service.media.errors import AlreadyRecording, InvalidTarget, MediaError, NotRecording
from camera_service.media.nvr import NvrManager
from camera_service.media.recordings import (
    RECORDING_FORMATS,
    RecordingInfo,
    RecordingResult,
    resolve_output_path,
)
from camera_service.media.source import CaptureSource
from camera_service.mediamtx.recording import StreamRecordings

log = logging.getLogger(__name__)

FOOTAGE_WAIT_S = 3.0  # at stop: the last fragment reaches the disk within about a second


@dataclass(eq=False)
class _SegmentRecording:
    info: RecordingInfo
    hold: str
    timer: asyncio.Task[None] | None = None
    stopping: bool = False


class NvrRecordings(StreamRecordings):
    """StreamRecordings plus recordings cut from continuous segments (see the module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.nvr: NvrManager | None = None
        self._from_segments: dict[str, _SegmentRecording] = {}

    # -- queries ---------------------------------------------------------------------------

    def active(self, camera_id: str) -> RecordingInfo | None:
        rec = self._from_segments.get(camera_id)
        return rec.info if rec is not None else super().active(camera_id)

    def active_all(self) -> list[RecordingInfo]:
        return [*super().active_all(), *(r.info for r in self._from_segments.values())]

    def active_files(self) -> set[Path]:
        return {*super().active_files(), *(r.info.path for r in self._from_segments.values())}

    # -- start / stop ------------------------------------------------------------------------

    async def start(
        self,
        source: CaptureSource,
        filename: str | None = None,
        format: str = "fmp4",
        duration: int | None = None,
        *,
        reads_device: bool = True,
    ) -> RecordingInfo:
        camera_id = source.camera_id
        if camera_id in self._from_segments:
            raise AlreadyRecording(f"camera {camera_id} is already recording")
        nvr = self.nvr
        if nvr is None or not (source.exclusive and reads_device and nvr.reads_device(camera_id)):
            return await super().start(
                source, filename, format, duration, reads_device=reads_device
            )
        if super().active(camera_id) is not None:
            raise AlreadyRecording(f"camera {camera_id} is already recording")
        if format not in RECORDING_FORMATS:
            raise InvalidTarget(f"unsupported recording format: {format!r}")
        if duration is not None and duration <= 0:
            raise InvalidTarget("duration must be positive")
        now = datetime.now(UTC)
        path = resolve_output_path(
            self.recordings_dir, filename, RECORDING_FORMATS[format], camera_id, now, Path.exists
        )
        if await asyncio.to_thread(path.exists):
            raise InvalidTarget(f"file already exists: {path.name}")
        info = RecordingInfo(camera_id, path.name, path, format, now, duration)
        rec = _SegmentRecording(info, nvr.hold_footage(camera_id, now.timestamp()))
        self._from_segments[camera_id] = rec
        if duration is not None:
            rec.timer = asyncio.create_task(self._stop_after(rec, duration))
        self._emit(info, "STARTED", duration)
        log.info("recording %s started from continuous segments: %s", camera_id, path.name)
        return info

    async def _stop_after(self, rec: _SegmentRecording, seconds: int) -> None:
        await asyncio.sleep(seconds)
        with contextlib.suppress(NotRecording):
            await self._stop_segments(rec, "duration_reached", error=False)

    async def stop(
        self, camera_id: str, reason: str = "stopped", *, error: bool = False
    ) -> RecordingResult:
        rec = self._from_segments.get(camera_id)
        if rec is None:
            return await super().stop(camera_id, reason, error=error)
        return await self._stop_segments(rec, reason, error=error)

    async def _stop_segments(
        self, rec: _SegmentRecording, reason: str, *, error: bool
    ) -> RecordingResult:
        info = rec.info
        if rec.stopping or self._from_segments.get(info.device) is not rec:
            raise NotRecording(f"camera {info.device} is not recording")
        rec.stopping = True
        if rec.timer is not None and rec.timer is not asyncio.current_task():
            rec.timer.cancel()
        end = time.time()
        nvr = self.nvr
        assert nvr is not None
        status, size = ("ERROR" if error else "STOPPED"), 0
        fmt = "mkv" if info.format == "mkv" else "mp4"
        try:
            await nvr.wait_footage(info.device, end, FOOTAGE_WAIT_S)
            clip = await nvr.export_clip(
                info.device, info.start_time.timestamp(), end, fmt, info.filename
            )
            size = clip.size
        except MediaError as exc:
            status, reason = "ERROR", exc.detail or exc.message
            log.warning("recording %s from segments failed: %s", info.device, reason)
        finally:
            nvr.release_footage(rec.hold)
            del self._from_segments[info.device]
        ended = datetime.now(UTC)
        duration = round(end - info.start_time.timestamp(), 3)
        self._emit(info, status, duration, reason)
        return RecordingResult(
            info.device,
            info.filename,
            info.path,
            info.format,
            info.start_time,
            ended,
            duration,
            size,
            status,
            reason,
        )

    async def stop_all(self, reason: str = "shutdown") -> list[RecordingResult]:
        ours = await asyncio.gather(
            *(self._stop_segments(r, reason, error=False) for r in self._from_segments.values()),
            return_exceptions=True,
        )
        results = await super().stop_all(reason)
        return [*results, *(r for r in ours if isinstance(r, RecordingResult))]
