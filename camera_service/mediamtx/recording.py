"""Recordings that respect the camera's MediaMTX stream, and recording in MediaMTX itself.

:class:`StreamRecordings` picks who records (:meth:`StreamRecordings.route`):

* ``record_with: mediamtx``, format fmp4, MediaMTX up: MediaMTX records the path. It turns
  ``record`` on for the path (MediaMTX applies that without restarting the path), holds a
  reader so the on-demand publisher runs (:mod:`.holder`), and returns once MediaMTX has
  created the first file, under its UTC name (:mod:`.segments`); a recording MediaMTX
  does not write fails (-32050). The record flag is part of the desired path configuration
  (:attr:`MediaMTXService.intents`), so a reconcile after a MediaMTX restart resumes the
  recording in a new segment, which is tracked too. ``stop`` waits until MediaMTX closed
  the last segment, so the sizes it reports are final.
* exclusive camera, MediaMTX up: FFmpeg records the camera's RTSP stream (the device keeps
  a single reader: MediaMTX's publisher).
* otherwise (MediaMTX disabled or down): FFmpeg reads the device, as RecordingManager.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from camera_service.media.errors import AlreadyRecording, MediaError, NotRecording
from camera_service.media.recordings import (
    RecordingInfo,
    RecordingManager,
    RecordingResult,
)
from camera_service.media.source import CaptureSource
from camera_service.mediamtx import segments
from camera_service.mediamtx.errors import (
    MediaMTXUnavailableError,
    PathConflictError,
    StreamingDisabledError,
    StreamStateError,
)
from camera_service.mediamtx.service import MediaMTXService
from camera_service.mediamtx.streaming import wait_ready
from camera_service.supervise import start_supervised

log = logging.getLogger(__name__)

SEGMENT_SCAN_S = 1.0
SEGMENT_POLL_S = 0.1
FIRST_SEGMENT_TIMEOUT_S = 6.0
FINALIZE_TIMEOUT_S = 5.0
HOLD_REASON = "recording"
RecordRoute = Literal["device", "stream", "mediamtx"]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(eq=False)
class _MtxRecording:
    info: RecordingInfo
    #: staged segment → its visible (hard-linked) name in the recordings directory.
    segments: dict[Path, Path] = field(default_factory=dict)
    #: visible segment → size in bytes.
    files: dict[Path, int] = field(default_factory=dict)
    preexisting: set[Path] = field(default_factory=set)
    watcher: asyncio.Task[None] | None = None
    stopping: bool = False


class RecordingNotWritten(MediaMTXUnavailableError):
    """MediaMTX accepted the recording but wrote no file (-32050)."""


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
        """Start a MediaMTX recording and return once its first file exists.

        None when MediaMTX went away before the recording was switched on (the caller falls
        back to FFmpeg); :class:`RecordingNotWritten` when MediaMTX writes no file within
        :data:`FIRST_SEGMENT_TIMEOUT_S` of the stream being ready.
        """
        now = _utc_now()
        pending = RecordingInfo(camera_id, "", self.recordings_dir, "fmp4", now, duration)
        rec = _MtxRecording(pending)  # named once MediaMTX writes the file
        self._mtx[camera_id] = rec  # reserved before any await: no double start
        try:
            await asyncio.to_thread(segments.settle_staging, self.recordings_dir, camera_id)
            rec.preexisting = set(await self._staged(camera_id))
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
        try:
            await self._wait_first_segment(rec)
        except BaseException:
            del self._mtx[camera_id]
            await self._end_in_mediamtx(camera_id)
            await asyncio.to_thread(segments.settle_staging, self.recordings_dir, camera_id)
            raise
        info = rec.info
        rec.watcher = start_supervised(f"mtx-rec-{camera_id}", lambda: self._watch_segments(rec))
        self._emit(info, "STARTED", duration)
        log.info("recording %s started in MediaMTX: %s", camera_id, info.filename)
        return info

    async def _wait_first_segment(self, rec: _MtxRecording) -> None:
        """Wait for the stream, then for the first segment file MediaMTX creates."""
        mtx, camera_id = self._mediamtx, rec.info.device
        camera = mtx.cameras.get(camera_id)
        if camera is None:
            raise StreamStateError(f"Camera {camera_id} is gone.", "DISCONNECTED", ["CONNECTED"])
        await wait_ready(mtx, camera)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FIRST_SEGMENT_TIMEOUT_S
        while not await self._scan_segments(rec):
            if loop.time() >= deadline:
                where = segments.staging_dir(self.recordings_dir.resolve())
                raise RecordingNotWritten(
                    f"MediaMTX wrote no recording of {camera_id} into {where} within "
                    f"{FIRST_SEGMENT_TIMEOUT_S:g} s of the stream being ready; check that the "
                    "MediaMTX user can create files there and that the stream's codec can be "
                    "recorded (its log says why)"
                )
            await asyncio.sleep(SEGMENT_POLL_S)  # MediaMTX announces no file: poll, bounded

    async def _begin_in_mediamtx(self, camera_id: str) -> None:
        """Turn MediaMTX recording on (``record: true``, applied without a path restart)
        and hold a reader so the on-demand publisher runs."""
        mtx = self._mediamtx
        camera = mtx.cameras.get(camera_id)
        if camera is None:
            raise StreamStateError(f"Camera {camera_id} is gone.", "DISCONNECTED", ["CONNECTED"])
        mtx.intents.recording.add(camera_id)
        try:
            await mtx.apply(camera)
            mtx.holders.hold(camera_id, HOLD_REASON)
        except BaseException:
            mtx.intents.recording.discard(camera_id)
            mtx.spawn_sync(camera_id)
            raise

    async def _end_in_mediamtx(self, camera_id: str) -> None:
        """Turn MediaMTX recording off; applied at recovery if MediaMTX is down now."""
        mtx = self._mediamtx
        mtx.intents.recording.discard(camera_id)
        await mtx.holders.release(camera_id, HOLD_REASON)
        camera = mtx.cameras.get(camera_id)
        if camera is None:
            return
        try:
            await mtx.apply(camera)
        except (MediaMTXUnavailableError, StreamingDisabledError, StreamStateError) as exc:
            log.warning("MediaMTX recording of %s not switched off yet: %s", camera_id, exc)

    async def _watch_segments(self, rec: _MtxRecording) -> None:
        """Follow the segments MediaMTX writes (a MediaMTX restart starts a new one); stop a
        timed recording on time."""
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

    async def _staged(self, camera_id: str) -> dict[Path, datetime]:
        return await asyncio.to_thread(segments.staged_segments, self.recordings_dir, camera_id)

    async def _scan_segments(self, rec: _MtxRecording) -> bool:
        """Link new staged segments under their UTC names, refresh sizes; True once the
        recording has a file."""
        camera_id = rec.info.device
        found = await self._staged(camera_id)
        for staged, start in sorted(found.items(), key=lambda item: item[1]):
            if staged in rec.preexisting or staged in rec.segments:
                continue
            visible = await asyncio.to_thread(
                segments.link_segment, staged, self.recordings_dir, camera_id, start
            )
            rec.segments[staged] = visible
            if not rec.files:
                rec.info = replace(rec.info, filename=visible.name, path=visible, start_time=start)
            else:
                log.info("recording %s continues in a new segment %s", camera_id, visible.name)
            rec.files[visible] = 0
        for visible in rec.files:
            rec.files[visible] = await asyncio.to_thread(segments.file_size, visible)
        return bool(rec.files)

    async def _wait_finalized(self, rec: _MtxRecording) -> None:
        """Wait until MediaMTX closed the last segment (its duration is in the header), so
        sizes are final; bounded by :data:`FINALIZE_TIMEOUT_S`."""
        if not rec.segments:
            return
        last = max(rec.segments, key=lambda staged: rec.segments[staged].name)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FINALIZE_TIMEOUT_S
        while not segments.fmp4_finalized(await asyncio.to_thread(segments.read_head, last)):
            if loop.time() >= deadline:
                log.warning("MediaMTX did not close %s within %g s", last, FINALIZE_TIMEOUT_S)
                return
            await asyncio.sleep(SEGMENT_POLL_S)  # MediaMTX announces no close: poll, bounded

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
        await self._wait_finalized(rec)
        await self._scan_segments(rec)
        await asyncio.to_thread(segments.settle_staging, self.recordings_dir, camera_id)
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
