"""Continuous recording of one camera: one FFmpeg process that is the camera's single reader.

Its outputs:

1. fixed-length segments (FFmpeg's segment muxer; fragmented MP4, so whatever reached the disk
   plays after a SIGKILL; keyframes forced on the segment boundaries, so each segment starts
   with one and consecutive segments meet without a lost frame; the muxer writes each closed
   segment to the run's list, see storage/segments.py),
2. the latest-frame JPEG that snapshots read while the camera is recorded (as recordings do),
3. optionally the motion analysis frames (media/motion.py) as UDP datagrams to loopback.

:class:`CameraRecorder` keeps that process alive: restarted with exponential backoff after a
crash, ended cleanly (``q``: the last segment is closed and listed) when stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from camera_service.config import MotionConfig
from camera_service.media.clips import media_duration
from camera_service.media.encoders import EncodeOptions, encode_args, global_args
from camera_service.media.errors import MediaError
from camera_service.media.motion import (
    MotionEventState,
    MotionScorer,
    MotionTracker,
    ffmpeg_motion_filter,
    open_receiver,
)
from camera_service.media.process import ProcessHandle
from camera_service.media.recorder_env import RecorderEnv, SourceFn
from camera_service.media.recordings import EncoderSettings
from camera_service.media.source import CaptureSource
from camera_service.storage import segments as seg
from camera_service.storage.modes import ModeSettings
from camera_service.supervise import start_supervised

log = logging.getLogger(__name__)

STABLE_AFTER_S = 30.0  # a run this long resets the restart backoff
T0_SAMPLES = 8  # progress blocks used to pin media time 0 to the wall clock


def build_continuous_args(
    ffmpeg: str,
    source: CaptureSource,
    pattern: str,
    segment_list: Path,
    segment_seconds: int,
    encoder: EncoderSettings,
    frame_path: Path,
    frame_rate: float,
    motion: MotionConfig | None,
    motion_port: int | None,
) -> list[str]:
    """FFmpeg argv: segments, latest frame and (optionally) motion frames from one input."""
    if source.is_h264:
        video = ["-c:v", "copy"]
        # Only the frame outputs decode; without motion scoring, key frames are enough.
        before_input = ["-skip_frame", "nokey"] if motion is None else []
    else:
        # the probed H.264 encoder (media/encoders.py), a key frame at every segment start
        gop = encoder.gop or source.fps or 15
        options = EncodeOptions(encoder.bitrate, encoder.preset, encoder.profile, encoder.tune)
        video = [
            *encode_args(encoder.codec, options, gop),
            *("-force_key_frames", f"expr:gte(t,n_forced*{segment_seconds})"),
        ]
        before_input = global_args(encoder.codec)
    # Fragments of about a second, each flushed to the file as soon as it is complete (the
    # segment muxer's own -flush_packets does not reach the MP4 muxer inside it).
    fragments = (
        "movflags=+frag_keyframe+empty_moov+default_base_moof:frag_duration=1000000:flush_packets=1"
    )
    argv = [
        *(ffmpeg, "-hide_banner", "-loglevel", "warning", "-nostats"),
        *("-progress", "pipe:1", "-stats_period", "0.5", "-y"),
        *before_input,
        *source.input_args(),
        *("-map", "0:v:0", "-an", *video),
        # No shift of the segment output's timestamps to make B-frame dts non-negative: the
        # shift (two frames with libx264 veryfast) would put every listed start but the first
        # that much after the input's media time, which t0 is pinned to. The MP4 muxer in each
        # segment still makes its own dts non-negative.
        *("-avoid_negative_ts", "disabled"),
        *("-f", "segment", "-segment_time", str(segment_seconds), "-reset_timestamps", "1"),
        *("-segment_format", "mp4", "-segment_format_options", fragments),
        *("-segment_list", str(segment_list), "-segment_list_type", "csv"),
        *("-strftime", "1", "-flush_packets", "1", pattern),
        *("-map", "0:v:0", "-an", "-vf", f"fps={frame_rate:g}:round=up,scale=out_range=full"),
        *("-pix_fmt", "yuv420p", "-strict", "unofficial", "-c:v", "mjpeg", "-q:v", "3"),
        *("-update", "1", "-atomic_writing", "1", "-f", "image2", str(frame_path)),
    ]
    argv += progress_clock_args()
    if motion is not None and motion_port is not None:
        size = motion.width * motion.height
        argv += [
            *("-map", "0:v:0", "-an", "-vf", ffmpeg_motion_filter(motion)),
            *("-f", "rawvideo", f"udp://127.0.0.1:{motion_port}?pkt_size={size}"),
        ]
    return argv


def progress_clock_args() -> list[str]:
    """An output that only sets the progress time: every decoded frame, as it is, to the null
    muxer, in a millisecond time base.

    FFmpeg's progress ``out_time`` is the furthest end time of its outputs; without this one it
    is the latest-frame JPEG's, a whole 1/frame_rate tick that leads or lags the input by up
    to that much, so t0 (now - out_time) was off by as much (and the encoded segments lag by
    the encoder's look-ahead). This one ends 1 ms after the newest frame."""
    return [
        *("-map", "0:v:0", "-an", "-c:v", "wrapped_avframe", "-enc_time_base", "1:1000"),
        *("-f", "null", "-"),
    ]


class MotionHooks(Protocol):
    """Where a recorder reports motion (the manager)."""

    def motion_started(self, camera_id: str, state: MotionEventState, score: float) -> None: ...

    def motion_ended(self, camera_id: str, state: MotionEventState) -> None: ...


class CameraRecorder:
    """Keeps one camera's continuous FFmpeg process running until stopped."""

    def __init__(
        self,
        env: RecorderEnv,
        camera_id: str,
        settings: ModeSettings,
        source_for: SourceFn,
        motion: MotionConfig | None,
        hooks: MotionHooks,
        on_state: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.env = env
        self.camera_id = camera_id
        self.settings = settings
        self._source_for = source_for
        self.motion = motion
        self._hooks = hooks
        self._on_state = on_state
        self.handle: ProcessHandle | None = None
        self.run: str | None = None
        self.t0: float | None = None
        self.reads_device = False
        self.frame_path = env.frames_dir / f"{camera_id}_continuous.jpg"
        self.restarts = 0
        self.last_error: str | None = None
        self.motion_frames = 0
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.running_event = asyncio.Event()  # set while a run has produced output

    @property
    def directory(self) -> Path:
        return seg.camera_dir(self.env.root, self.camera_id)

    @property
    def active(self) -> bool:
        return self.handle is not None and self.handle.running and self.running_event.is_set()

    def start(self) -> None:
        if self._task is None:
            self._task = start_supervised(f"continuous-{self.camera_id}", self._loop)

    def wake(self) -> None:
        """The camera may have come back: try now instead of after the backoff."""
        self._wake.set()

    async def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        handle = self.handle
        if handle is not None and handle.running:
            await self.env.supervisor.stop(handle, self.env.stop_policy)
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # -- the loop --------------------------------------------------------------------------

    async def _loop(self) -> None:
        attempt = 0
        while not self._stopping.is_set():
            found = self._source_for(self.camera_id)
            if found is None:
                await self._sleep(None)  # until the camera is back (wake) or stopped
                continue
            source, reads_device = found
            started = time.monotonic()
            try:
                await self._run_once(source, reads_device)
            except MediaError as exc:
                self.last_error = exc.detail
                log.warning("continuous recording of %s failed: %s", self.camera_id, exc.detail)
            except Exception:
                log.exception("continuous recording of %s failed", self.camera_id)
            if self._stopping.is_set():
                break
            attempt = 0 if time.monotonic() - started >= STABLE_AFTER_S else attempt + 1
            self.restarts += 1
            delay = min(self.env.backoff_base * 2 ** max(attempt - 1, 0), self.env.backoff_max)
            log.info("continuous recording of %s restarts in %.1f s", self.camera_id, delay)
            await self._sleep(delay)

    async def _sleep(self, delay: float | None) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), delay)

    async def _run_once(self, source: CaptureSource, reads_device: bool) -> None:
        settings, env = self.settings, self.env
        mode: seg.RunMode = "m" if settings.mode == "motion" else "c"
        run = seg.new_run_id(mode)
        directory = self.directory
        record = seg.RunRecord(run, self.camera_id, time.time(), settings.segment_seconds)
        await asyncio.to_thread(self._prepare, record)
        transport = None
        port = None
        tracker: MotionTracker | None = None
        if self.motion is not None:
            scorer = MotionScorer(self.motion)
            tracker = MotionTracker.from_config(
                self.motion,
                lambda state, score: self._hooks.motion_started(self.camera_id, state, score),
                lambda state: self._hooks.motion_ended(self.camera_id, state),
            )

            def on_frame(data: bytes) -> None:
                score = scorer.score(data)
                if score is not None and tracker is not None:
                    self.motion_frames += 1
                    tracker.feed(time.time(), score)

            transport, _protocol, port = await open_receiver(on_frame)
        argv = build_continuous_args(
            env.ffmpeg,
            source,
            seg.segment_pattern(directory, self.camera_id, run),
            directory / f"{run}.csv",
            settings.segment_seconds,
            env.encoder,
            self.frame_path,
            env.frame_rate,
            self.motion,
            port,
        )
        self.run, self.t0, self.reads_device = run, record.t0, reads_device
        self.running_event.clear()
        try:
            self.handle = handle = await env.supervisor.start(
                argv,
                camera_id=self.camera_id,
                role="continuous",
                reader=reads_device,
                exclusive=source.exclusive and reads_device,
                busy_timeout=env.busy_timeout,
                capture_progress=True,
                env={**os.environ, "TZ": "UTC"},
            )
            if self._stopping.is_set():  # stop() came while FFmpeg was being spawned
                await env.supervisor.stop(handle, env.stop_policy)
            await self._pin_t0(handle, record)
            await handle.wait()
            if handle.returncode not in (0, None) and not handle.stop_requested:
                self.last_error = handle.error_summary()
                raise MediaError("ffmpeg stopped", self.last_error)
        finally:
            self.running_event.clear()
            if tracker is not None:
                tracker.finish()
            if transport is not None:
                transport.close()
            await asyncio.to_thread(self.frame_path.unlink, missing_ok=True)
            await close_run(env.ffprobe, directory, run)
            if self._on_state is not None:
                await self._on_state()

    def _prepare(self, record: seg.RunRecord) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.env.frames_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.frame_path.unlink(missing_ok=True)
        seg.write_run(self.directory, record)

    async def _pin_t0(self, handle: ProcessHandle, record: seg.RunRecord) -> None:
        """Media time 0 on the wall clock: the smallest (now - out_time) over the first
        progress blocks (output latency only ever adds to it)."""
        best: float | None = None
        seen = 0
        last: dict[str, str] | None = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.env.start_wait
        while seen < T0_SAMPLES and handle.running:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                block = await asyncio.wait_for(
                    handle.wait_for_progress(_newer_than(last)), remaining
                )
            except (TimeoutError, MediaError):
                break
            last = block
            out_time = handle.media_time
            if out_time <= 0:
                continue
            seen += 1
            candidate = time.time() - out_time
            if best is None or candidate < best:
                best = candidate
                self.t0 = best
                await asyncio.to_thread(
                    seg.write_run,
                    self.directory,
                    seg.RunRecord(record.run, record.device, best, record.segment_seconds),
                )
            if seen == 1:
                self.running_event.set()
                if self._on_state is not None:
                    await self._on_state()


def _newer_than(last: dict[str, str] | None) -> Callable[[dict[str, str]], bool]:
    def newer(block: dict[str, str]) -> bool:
        return block is not last

    return newer


async def close_run(ffprobe: str, directory: Path, run: str) -> None:
    """After a run ended: probe the segments missing from its list (the one a killed process
    was writing) and append them, so the list covers every segment of the run."""
    missing = await asyncio.to_thread(seg.unlisted, directory, run)
    if not missing:
        # A run that wrote nothing (FFmpeg could not open the camera) leaves no record.
        await asyncio.to_thread(seg.remove_run_if_empty, directory, run)
        return
    listed = await asyncio.to_thread(seg.read_segment_list, directory, run)
    start = max((end for _s, end in listed.values()), default=0.0)
    for name in missing:
        path = directory / name
        try:
            duration = await media_duration(ffprobe, path)
        except MediaError as exc:
            log.warning("segment %s unreadable (%s); removed", name, exc.detail)
            duration = 0.0
        if duration <= 0:
            await asyncio.to_thread(path.unlink, missing_ok=True)
            continue
        await asyncio.to_thread(seg.append_segment, directory, run, name, start, start + duration)
        start += duration
