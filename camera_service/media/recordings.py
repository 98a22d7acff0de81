"""Recordings: one FFmpeg process per recorded camera, which is also that camera's single reader.

Besides the recording file, the process keeps a latest-frame JPEG up to date (second output), so
snapshots taken during a recording never open the device a second time.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from camera_service.media import remux
from camera_service.media.errors import AlreadyRecording, InvalidTarget, MediaError, NotRecording
from camera_service.media.ffmpeg import ProcessSupervisor
from camera_service.media.process import ProcessHandle, StopPolicy
from camera_service.media.recording_args import (
    EncoderSettings,
    build_recording_args,
    frames_written,
    recording_outcome,
    resolve_output_path,
)
from camera_service.media.source import CaptureSource

__all__ = [
    "RECORDING_FORMATS",
    "AlreadyRecording",
    "EncoderSettings",
    "MediaError",
    "NotRecording",
    "RecordingInfo",
    "RecordingManager",
    "RecordingResult",
    "build_recording_args",
    "recording_outcome",
    "resolve_output_path",
]

log = logging.getLogger(__name__)

RecordingFormat = Literal["fmp4", "mp4", "mkv"]
RECORDING_FORMATS: dict[str, str] = {"fmp4": ".mp4", "mp4": ".mp4", "mkv": ".mkv"}
EventCallback = Callable[[dict[str, Any]], object]

_DURATION_SLACK = 10.0  # the watchdog stops a timed recording that overruns -t by this much
# A start that failed has no footage to save: stop FFmpeg quickly (a process stuck opening its
# input ignores q and the first SIGINT/SIGTERM).
_ABORT_POLICY = StopPolicy(quit_grace=0.2, int_grace=0.3, term_grace=0.3, kill_grace=2.0)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class RecordingInfo:
    device: str
    filename: str
    path: Path
    format: str
    start_time: datetime
    duration: int | None  # requested duration (s); None = until stopped


@dataclass(frozen=True)
class RecordingResult:
    device: str
    filename: str
    path: Path
    format: str
    start_time: datetime
    end_time: datetime
    duration: float  # seconds actually recorded (wall clock)
    file_size: int
    status: str  # STOPPED | ERROR
    reason: str


@dataclass(eq=False)
class _Recording:
    info: RecordingInfo
    frame_path: Path
    handle: ProcessHandle | None = None
    stop_reason: str | None = None
    stop_error: bool = False
    file_created: bool = False
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Future[RecordingResult] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


# --------------------------------------------------------------------------- manager


class RecordingManager:
    """Starts and stops recordings; emits ``recording_status_update``-shaped events."""

    def __init__(
        self,
        supervisor: ProcessSupervisor,
        recordings_dir: Path,
        encoder: EncoderSettings | None = None,
        on_event: EventCallback | None = None,
        *,
        ffmpeg: str = "ffmpeg",
        frames_dir: Path | None = None,
        start_timeout: float = 10.0,
        busy_timeout: float = 5.0,
        frame_rate: float = 2.0,
        stop_policy: StopPolicy | None = None,
    ) -> None:
        self._supervisor = supervisor
        self.recordings_dir = Path(recordings_dir)
        self._encoder = encoder or EncoderSettings()
        self._on_event = on_event
        self._ffmpeg = ffmpeg
        self._frames_dir = frames_dir
        self._own_frames_dir = frames_dir is None
        self._start_timeout = start_timeout
        self._busy_timeout = busy_timeout
        self._frame_rate = frame_rate
        self._stop_policy = stop_policy
        self._active: dict[str, _Recording] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._recovering: set[Path] = set()
        self.recovered = asyncio.Event()
        # Other single readers whose latest frame snapshots may use (continuous recording).
        self.frame_sources: list[Callable[[str], Path | None]] = []

    def set_video_encoder(self, codec: str) -> None:
        """The H.264 encoder for recordings that must encode (chosen by the encoder probe)."""
        self._encoder = replace(self._encoder, codec=codec)

    # -- queries ---------------------------------------------------------------------------

    def active(self, camera_id: str) -> RecordingInfo | None:
        rec = self._active.get(camera_id)
        return rec.info if rec is not None else None

    def active_all(self) -> list[RecordingInfo]:
        return [rec.info for rec in self._active.values()]

    def active_files(self) -> set[Path]:
        """Files being written right now (never delete or clean these up)."""
        return {rec.info.path for rec in self._active.values()} | self._recovering

    def latest_frame(self, camera_id: str) -> Path | None:
        """Where the recording process of the camera writes its latest frame (may not exist
        yet right after the start); None when the camera is not being recorded."""
        rec = self._active.get(camera_id)
        if rec is not None:
            return rec.frame_path
        for source in self.frame_sources:
            if (path := source(camera_id)) is not None:
                return path
        return None

    def process(self, camera_id: str) -> ProcessHandle | None:
        rec = self._active.get(camera_id)
        return rec.handle if rec is not None else None

    # -- start -----------------------------------------------------------------------------

    async def start(
        self,
        source: CaptureSource,
        filename: str | None = None,
        format: str = "fmp4",
        duration: int | None = None,
        *,
        reads_device: bool = True,
    ) -> RecordingInfo:
        """Spawn the recording and return once FFmpeg has encoded its first frame.

        FFmpeg that exits with an error, or has produced no frame after ``start_timeout`` s
        (a hung source), is stopped and :class:`MediaError` raised; no file is left behind.

        ``reads_device=False`` when ``source`` is not the camera's device (e.g. its MediaMTX
        RTSP stream): the process is then not registered as the device's reader.
        """
        camera_id = source.camera_id
        if format not in RECORDING_FORMATS:
            raise InvalidTarget(f"unsupported recording format: {format!r}")
        if duration is not None and duration <= 0:
            raise InvalidTarget("duration must be positive")
        if camera_id in self._active:
            raise AlreadyRecording(f"camera {camera_id} is already recording")
        now = datetime.now(UTC)
        path = resolve_output_path(
            self.recordings_dir,
            filename,
            RECORDING_FORMATS[format],
            camera_id,
            now,
            taken=Path.exists,
        )
        info = RecordingInfo(camera_id, path.name, path, format, now, duration)
        rec = _Recording(info, self._frames_path(camera_id))
        self._active[camera_id] = rec  # reserved before any await: no double start
        try:
            await self._spawn(rec, source, reads_device)
        except BaseException:
            self._active.pop(camera_id, None)
            if rec.handle is not None and rec.handle.running:
                await self._supervisor.stop(rec.handle, _ABORT_POLICY)
            if rec.file_created:
                frames = rec.handle is not None and frames_written(rec.handle.progress) > 0
                await asyncio.to_thread(self._discard, path, rec.frame_path, not frames)
            raise
        finally:
            rec.ready.set()
        self._track(self._watch(rec))
        self._emit(info, "STARTED", duration)
        log.info("recording %s started: %s (%s)", camera_id, path.name, format)
        return info

    async def _spawn(self, rec: _Recording, source: CaptureSource, reads_device: bool) -> None:
        info = rec.info
        await asyncio.to_thread(self._prepare_files, info.path, rec.frame_path, info.format)
        rec.file_created = True
        argv = build_recording_args(
            self._ffmpeg,
            source,
            info.path,
            info.format,
            info.duration,
            self._encoder,
            rec.frame_path,
            self._frame_rate,
        )
        limit = info.duration + _DURATION_SLACK if info.duration is not None else None
        rec.handle = await self._supervisor.start(
            argv,
            camera_id=source.camera_id,
            role="recording",
            reader=reads_device,
            exclusive=source.exclusive and reads_device,
            busy_timeout=self._busy_timeout,
            time_limit=limit,
            capture_progress=True,
        )
        await self._await_running(rec.handle)

    async def _await_running(self, handle: ProcessHandle) -> None:
        """Until FFmpeg reports a frame written; MediaError when it exits or hangs first."""
        try:
            await asyncio.wait_for(
                handle.wait_for_progress(lambda block: frames_written(block) > 0),
                self._start_timeout,
            )
        except TimeoutError:
            raise MediaError(
                "ffmpeg produced no video",
                f"no frame from the camera within {self._start_timeout:g} s",
            ) from None
        except MediaError:
            if handle.returncode == 0:
                return  # a source that ended at once (e.g. a short file) is not a failure
            raise MediaError(
                "ffmpeg failed to start the recording", handle.error_summary()
            ) from None

    def _frames_path(self, camera_id: str) -> Path:
        if self._frames_dir is None:
            # The pid in the name lets the next start remove it after a crash (remux.py).
            prefix = f"{remux.FRAMES_PREFIX}{os.getpid()}-"
            self._frames_dir = Path(tempfile.mkdtemp(prefix=prefix))
        return self._frames_dir / f"{camera_id}_latest.jpg"

    @staticmethod
    def _prepare_files(path: Path, frame_path: Path, fmt: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        frame_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        frame_path.unlink(missing_ok=True)
        try:
            with path.open("xb"):  # reserve the name; FFmpeg overwrites the empty file
                pass
        except FileExistsError as exc:
            raise InvalidTarget(f"file already exists: {path.name}") from exc
        if fmt == "mp4":
            remux.marker_for(path).touch()  # a remux is owed, even after a crash

    def start_recovery(self) -> None:
        """Run :meth:`recover` in the background (``stop_all`` waits for it, bounded)."""
        self._track(self.recover())

    async def recover(self) -> None:
        """At start: finish the remuxes a crash or a shutdown left owed, and remove the
        latest-frame directories of daemons that are gone. Sets :attr:`recovered`."""
        try:
            await remux.recover(
                self._supervisor, self._ffmpeg, self.recordings_dir, self._recovering
            )
        finally:
            self.recovered.set()

    @staticmethod
    def _discard(path: Path, frame_path: Path, no_frames: bool) -> None:
        """Remove what a failed start left: the frame file, and the recording file when it is
        empty or holds no frame (at most a container header)."""
        frame_path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            if no_frames or path.stat().st_size == 0:
                path.unlink()
                remux.marker_for(path).unlink(missing_ok=True)

    # -- end -------------------------------------------------------------------------------

    async def _watch(self, rec: _Recording) -> None:
        assert rec.handle is not None
        await rec.handle.wait()
        try:
            result = await self._finish(rec)
        except BaseException as exc:
            rec.done.set_exception(exc)
            raise
        rec.done.set_result(result)

    async def _finish(self, rec: _Recording) -> RecordingResult:
        handle, info = rec.handle, rec.info
        assert handle is not None
        status, reason = recording_outcome(
            stop_reason=rec.stop_reason,
            stop_error=rec.stop_error,
            duration=info.duration,
            returncode=handle.returncode,
            timed_out=handle.timed_out,
            stderr_tail=handle.stderr_tail,
            stop_requested=handle.stop_requested,
        )
        if info.format == "mp4" and reason != "shutdown":
            # At shutdown the marker stays and the next start remuxes (time budget).
            await remux.remux(self._supervisor, self._ffmpeg, info.path)
        size = await asyncio.to_thread(_file_size, info.path)
        await asyncio.to_thread(rec.frame_path.unlink, missing_ok=True)
        if size == 0:  # nothing was recorded: no empty file is left or listed
            await asyncio.to_thread(info.path.unlink, missing_ok=True)
            await asyncio.to_thread(remux.marker_for(info.path).unlink, missing_ok=True)
        if self._active.get(info.device) is rec:
            del self._active[info.device]
        result = RecordingResult(
            info.device,
            info.filename,
            info.path,
            info.format,
            info.start_time,
            datetime.now(UTC),
            round(handle.elapsed, 3),
            size,
            status,
            reason,
        )
        level = logging.WARNING if status == "ERROR" else logging.INFO
        log.log(level, "recording %s %s (%s): %s", info.device, status, reason, info.filename)
        self._emit(info, status, result.duration, reason)
        return result

    async def stop(
        self, camera_id: str, reason: str = "stopped", *, error: bool = False
    ) -> RecordingResult:
        """Stop gracefully (file finalized) and return the result; ``error=True`` reports the
        end as status ERROR (e.g. reason ``camera_disconnected``)."""
        rec = self._active.get(camera_id)
        if rec is not None:
            await rec.ready.wait()
        if rec is None or self._active.get(camera_id) is not rec or rec.handle is None:
            raise NotRecording(f"camera {camera_id} is not recording")
        if rec.stop_reason is None:
            rec.stop_reason, rec.stop_error = reason, error
        await self._supervisor.stop(rec.handle, self._stop_policy)
        return await asyncio.shield(rec.done)

    async def stop_all(self, reason: str = "shutdown") -> list[RecordingResult]:
        results = await asyncio.gather(
            *(self.stop(cam, reason) for cam in list(self._active)), return_exceptions=True
        )
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)
        if self._own_frames_dir and self._frames_dir is not None:
            await asyncio.to_thread(shutil.rmtree, self._frames_dir, True)
            self._frames_dir = None
        return [r for r in results if isinstance(r, RecordingResult)]

    # -- events ----------------------------------------------------------------------------

    def _emit(
        self, info: RecordingInfo, status: str, duration: float | None, reason: str | None = None
    ) -> None:
        if self._on_event is None:
            return
        event: dict[str, Any] = {
            "device": info.device,
            "status": status,
            "filename": info.filename,
            "duration": duration,
        }
        if reason is not None:
            event["reason"] = reason
        try:
            outcome = self._on_event(event)
            if inspect.isawaitable(outcome):
                self._track(_await(outcome))
        except Exception:
            log.exception("recording event callback failed")

    def _track(self, coro: Any) -> None:
        task: asyncio.Task[Any] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _await(awaitable: Any) -> None:
    try:
        await awaitable
    except Exception:
        log.exception("recording event callback failed")


def _file_size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
