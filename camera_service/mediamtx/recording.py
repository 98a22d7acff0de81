"""Recordings that respect the camera's MediaMTX stream, and recording in MediaMTX itself.

:class:`StreamRecordings` picks who records (:meth:`StreamRecordings.route`):

* ``record_with: mediamtx``, format fmp4, MediaMTX up: MediaMTX records the path. It turns
  ``record`` on for the path (always-on publisher, ``recordFormat: fmp4``, files in the
  recordings directory named ``<camera>_<YYYY-MM-DD_HH-MM-SS>.mp4``) and follows the
  segment files it writes. The record flag is part of the desired path configuration
  (:attr:`MediaMTXService.intents`), so a reconcile after a MediaMTX restart resumes the
  recording (in a new file).
* exclusive camera, MediaMTX up: FFmpeg records the camera's RTSP stream (the device keeps
  a single reader: MediaMTX's publisher).
* otherwise (MediaMTX disabled or down): FFmpeg reads the device, as RecordingManager.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from camera_service.media.ffmpeg import AlreadyRecording, MediaError, NotRecording
from camera_service.media.recordings import (
    RecordingInfo,
    RecordingManager,
    RecordingResult,
)
from camera_service.media.source import CaptureSource
from camera_service.mediamtx.errors import (
    MediaMTXUnavailableError,
    PathConflictError,
    StreamingDisabledError,
    StreamStateError,
)
from camera_service.mediamtx.service import MediaMTXService
from camera_service.storage.files import generated_filename

log = logging.getLogger(__name__)

SEGMENT_SCAN_S = 1.0
RecordRoute = Literal["device", "stream", "mediamtx"]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(eq=False)
class _MtxRecording:
    info: RecordingInfo
    files: dict[Path, int] = field(default_factory=dict)
    preexisting: set[Path] = field(default_factory=set)
    watcher: asyncio.Task[None] | None = None
    stopping: bool = False


class StreamRecordings(RecordingManager):
    """RecordingManager that records through MediaMTX when it can (see the module)."""

    def __init__(self, mediamtx: MediaMTXService, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._mediamtx = mediamtx
        self._mtx: dict[str, _MtxRecording] = {}
        mediamtx.attach_recordings(self)

    # -- queries ---------------------------------------------------------------------------

    def active(self, camera_id: str) -> RecordingInfo | None:
        rec = self._mtx.get(camera_id)
        return rec.info if rec is not None else super().active(camera_id)

    def active_all(self) -> list[RecordingInfo]:
        return [*super().active_all(), *(rec.info for rec in self._mtx.values())]

    def active_files(self) -> set[Path]:
        files = super().active_files()
        for rec in self._mtx.values():
            files.add(rec.info.path)
            files.update(rec.files)
        return files

    def route(self, source: CaptureSource, *, in_mediamtx: bool = False) -> RecordRoute:
        """Who records: MediaMTX (when ``in_mediamtx`` is possible and configured), FFmpeg
        from the stream (exclusive cameras) or FFmpeg from the device."""
        mtx = self._mediamtx
        if not mtx.path_usable(source.camera_id):
            return "device"
        if in_mediamtx and mtx.config.record_with == "mediamtx":
            return "mediamtx"
        return "stream" if source.exclusive else "device"

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
        if camera_id in self._mtx or super().active(camera_id) is not None:
            raise AlreadyRecording(f"camera {camera_id} is already recording")
        in_mediamtx = format == "fmp4" and filename is None  # MediaMTX names its files
        route = self.route(source, in_mediamtx=in_mediamtx)
        if route == "mediamtx":
            info = await self._start_in_mediamtx(camera_id, duration)
            if info is not None:
                return info
            route = self.route(source)
        if route == "stream":
            stream = self._mediamtx.stream_source(source)
            return await super().start(stream, filename, format, duration, reads_device=False)
        return await super().start(source, filename, format, duration, reads_device=reads_device)

    async def _start_in_mediamtx(
        self, camera_id: str, duration: int | None
    ) -> RecordingInfo | None:
        """Start a MediaMTX recording; None when MediaMTX went away (caller falls back)."""
        now = _utc_now()
        name = generated_filename(camera_id, ".mp4", now)
        info = RecordingInfo(camera_id, name, self.recordings_dir / name, "fmp4", now, duration)
        rec = _MtxRecording(info)
        self._mtx[camera_id] = rec  # reserved before any await: no double start
        try:
            rec.preexisting = set(await self._segments(camera_id))
            await self._begin_in_mediamtx(camera_id)
        except PathConflictError as exc:
            del self._mtx[camera_id]
            raise MediaError("MediaMTX could not record the camera", exc.detail) from None
        except (MediaMTXUnavailableError, StreamingDisabledError, StreamStateError) as exc:
            del self._mtx[camera_id]
            log.warning("MediaMTX recording of %s not started (%s); FFmpeg records", camera_id, exc)
            return None
        except BaseException:
            del self._mtx[camera_id]
            raise
        rec.watcher = asyncio.create_task(self._watch_segments(rec), name=f"mtx-rec-{camera_id}")
        self._emit(info, "STARTED", duration)
        log.info("recording %s started in MediaMTX (%s)", camera_id, self._mediamtx.recordings_dir)
        return info

    async def _begin_in_mediamtx(self, camera_id: str) -> None:
        """Turn MediaMTX recording on for the camera (always-on publisher + ``record``)."""
        mtx = self._mediamtx
        camera = mtx.cameras.get(camera_id)
        if camera is None:
            raise StreamStateError(f"Camera {camera_id} is gone.", "DISCONNECTED", ["CONNECTED"])
        mtx.intents.recording.add(camera_id)
        try:
            await mtx.apply(camera)
        except BaseException:
            mtx.intents.recording.discard(camera_id)
            mtx.spawn_sync(camera_id)
            raise

    async def _end_in_mediamtx(self, camera_id: str) -> None:
        """Turn MediaMTX recording off; applied at recovery if MediaMTX is down now."""
        mtx = self._mediamtx
        mtx.intents.recording.discard(camera_id)
        camera = mtx.cameras.get(camera_id)
        if camera is None:
            return
        try:
            await mtx.apply(camera)
        except (MediaMTXUnavailableError, StreamingDisabledError, StreamStateError) as exc:
            log.warning("MediaMTX recording of %s not switched off yet: %s", camera_id, exc)

    async def _watch_segments(self, rec: _MtxRecording) -> None:
        """Follow the segment files MediaMTX writes; stop a timed recording on time."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + rec.info.duration if rec.info.duration else None
        while True:
            await self._scan_segments(rec)
            if deadline is not None and loop.time() >= deadline:
                self._track(self._stop_mtx(rec, "duration_reached", error=False))
                return
            delay = (
                SEGMENT_SCAN_S if deadline is None else min(SEGMENT_SCAN_S, deadline - loop.time())
            )
            await asyncio.sleep(max(delay, 0.0))

    async def _segments(self, camera_id: str) -> dict[Path, int]:
        return await asyncio.to_thread(segment_files, self.recordings_dir, camera_id)

    async def _scan_segments(self, rec: _MtxRecording) -> None:
        found = await self._segments(rec.info.device)
        rec.files = {path: size for path, size in found.items() if path not in rec.preexisting}
        if rec.files:
            first = min(rec.files)
            if first.name != rec.info.filename:
                rec.info = replace(rec.info, filename=first.name, path=first)

    async def stop(
        self, camera_id: str, reason: str = "stopped", *, error: bool = False
    ) -> RecordingResult:
        rec = self._mtx.get(camera_id)
        if rec is None:
            return await super().stop(camera_id, reason, error=error)
        if rec.stopping:
            raise NotRecording(f"camera {camera_id} is not recording")
        return await self._stop_mtx(rec, reason, error=error)

    async def _stop_mtx(self, rec: _MtxRecording, reason: str, *, error: bool) -> RecordingResult:
        rec.stopping = True
        camera_id = rec.info.device
        if rec.watcher is not None and rec.watcher is not asyncio.current_task():
            rec.watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await rec.watcher
        await self._end_in_mediamtx(camera_id)
        await self._scan_segments(rec)
        self._mtx.pop(camera_id, None)
        end = _utc_now()
        elapsed = round((end - rec.info.start_time).total_seconds(), 3)
        status = "ERROR" if error else "STOPPED"
        info = rec.info
        result = RecordingResult(
            camera_id, info.filename, info.path, info.format, info.start_time, end, elapsed,
            sum(rec.files.values()), status, reason,
        )  # fmt: skip
        self._emit(info, status, elapsed, reason)
        log.info("recording %s in MediaMTX %s (%s): %s", camera_id, status, reason, info.filename)
        return result

    async def stop_all(self, reason: str = "shutdown") -> list[RecordingResult]:
        ours = await asyncio.gather(
            *(self._stop_mtx(rec, reason, error=False) for rec in list(self._mtx.values())),
            return_exceptions=True,
        )
        results = await super().stop_all(reason)
        return [*results, *(r for r in ours if isinstance(r, RecordingResult))]


_SEGMENT_RE = re.compile(r"^(?P<id>.+)_\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}\.mp4$")


def segment_files(directory: Path, camera_id: str) -> dict[Path, int]:
    """Files named like the camera's recordings: path → size (blocking I/O)."""
    found: dict[Path, int] = {}
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return found
    for entry in entries:
        match = _SEGMENT_RE.match(entry.name)
        if match is None or match.group("id") != camera_id:
            continue
        with contextlib.suppress(OSError):
            found[Path(entry.path)] = entry.stat().st_size
    return found
