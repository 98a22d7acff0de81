"""Live frames: one JPEG reader per camera, fanned out to any number of viewers.

A feed runs one FFmpeg process (``-f mpjpeg`` on stdout) that reads the camera once, however
many MJPEG viewers and snapshot URLs use it. Viewers never queue frames: each one takes the
newest frame when it is ready for the next, so a slow viewer skips frames and costs no memory.
The reader is *preemptible*: a recording that needs the single-reader device stops it, and the
feed then follows the recording's own latest-frame JPEG until the recording ends. A feed with
no viewers ends after ``keepalive`` seconds (a snapshot URL keeps it warm that long).

:class:`MpjpegParser` is the pure part (bytes in, frames out) and is tested without processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from camera_service.media.errors import MediaError
from camera_service.media.ffmpeg import ProcessSupervisor
from camera_service.media.process import ProcessHandle
from camera_service.media.recordings import RecordingManager
from camera_service.media.snapshots import is_complete_jpeg
from camera_service.media.source import CaptureSource

log = logging.getLogger(__name__)

SourceResolver = Callable[[str], Awaitable[tuple[CaptureSource, bool] | None]]
_READ_CHUNK = 65536
_RECORDING_POLL_S = 0.1
_DEMAND_CHECK_S = 0.25
_DRAIN_TIMEOUT_S = 15.0
_RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)


class FrameError(Exception):
    """No frame could be had (camera gone, reader failing, timeout); ``message`` is for users."""

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail or message


class TooManyViewers(FrameError):
    """The camera already has ``max_viewers`` MJPEG viewers."""


# --------------------------------------------------------------------------- pure parsing


class MpjpegParser:
    """Splits FFmpeg's ``mpjpeg`` output (boundary, headers with Content-length, JPEG) into
    frames. Bounded: a part header over 4 KiB or a frame over ``max_frame_bytes`` is an error."""

    MAX_HEADER = 4096

    def __init__(self, max_frame_bytes: int) -> None:
        self._buf = bytearray()
        self._need: int | None = None  # body length of the part being read
        self._max = max_frame_bytes

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        frames: list[bytes] = []
        while True:
            if self._need is None:
                end = self._buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(self._buf) > self.MAX_HEADER:
                        raise ValueError("mpjpeg part header too long")
                    return frames
                self._need = self._content_length(bytes(self._buf[:end]))
                del self._buf[: end + 4]
            if len(self._buf) < self._need:
                return frames
            frames.append(bytes(self._buf[: self._need]))
            del self._buf[: self._need]
            self._need = None

    def _content_length(self, header: bytes) -> int:
        for line in header.split(b"\r\n"):
            name, sep, value = line.partition(b":")
            if sep and name.strip().lower() == b"content-length":
                try:
                    length = int(value.strip())
                except ValueError:
                    raise ValueError("bad mpjpeg Content-length") from None
                if not 0 < length <= self._max:
                    raise ValueError(f"mpjpeg frame of {length} bytes is over the limit")
                return length
        raise ValueError("mpjpeg part without Content-length")


def build_mjpeg_args(
    ffmpeg: str, source: CaptureSource, fps: int, quality: int, warmup_frames: int = 0
) -> list[str]:
    """FFmpeg argv: the camera as a continuous multipart JPEG stream on stdout. A V4L2 camera
    skips ``warmup_frames`` first (auto-exposure settles), as one-frame snapshots do."""
    chain = f"fps={fps}:round=up,scale=out_range=full"
    if warmup_frames > 0 and source.kind == "v4l2":
        chain = f"select=gte(n\\,{warmup_frames})," + chain
    return [
        *(ffmpeg, "-hide_banner", "-loglevel", "error", "-nostats"),
        *source.input_args(),
        *("-map", "0:v:0", "-an"),
        *("-vf", chain),
        *("-pix_fmt", "yuv420p", "-strict", "unofficial", "-c:v", "mjpeg", "-q:v", str(quality)),
        *("-f", "mpjpeg", "pipe:1"),
    ]


# --------------------------------------------------------------------------- feeds


@dataclass(eq=False)
class _Feed:
    camera_id: str
    frame: bytes | None = None
    seq: int = 0
    stamp: float = 0.0  # monotonic time of the newest frame
    viewers: int = 0
    demand_until: float = 0.0
    restarts: int = 0
    error: str | None = None
    task: asyncio.Task[None] | None = None
    handle: ProcessHandle | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def publish(self, frame: bytes) -> None:
        self.frame, self.seq, self.stamp, self.error = frame, self.seq + 1, time.monotonic(), None
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()

    def wake(self) -> None:
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()


class Viewer:
    """One MJPEG viewer: ``await next()`` returns the newest frame not yet seen."""

    def __init__(self, hub: FrameHub, feed: _Feed) -> None:
        self._hub, self._feed, self._seen = hub, feed, 0

    async def next(self, timeout: float) -> bytes:
        feed = self._feed
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while feed.seq <= self._seen or feed.frame is None:
            if feed.task is None or feed.task.done():
                raise FrameError("the camera's frame reader stopped", feed.error)
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise FrameError("no frame from the camera", feed.error or "timed out")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(feed.changed.wait(), remaining)
        self._seen = feed.seq
        return feed.frame


class FrameHub:
    """Feeds per camera; the one place that reads cameras for live frames."""

    def __init__(
        self,
        supervisor: ProcessSupervisor,
        recordings: RecordingManager,
        resolve: SourceResolver,
        *,
        ffmpeg: str = "ffmpeg",
        fps: int = 10,
        quality: int = 5,
        keepalive: float = 10.0,
        max_viewers: int = 50,
        max_frame_bytes: int = 8 * 1024 * 1024,
        max_frame_age: float = 2.0,
        busy_timeout: float = 5.0,
        warmup_frames: int = 0,
    ) -> None:
        """``resolve(camera_id)``: the capture source and whether it reads the device itself
        (False for a MediaMTX stream), or None when the camera cannot be read now."""
        self._supervisor = supervisor
        self._recordings = recordings
        self._resolve = resolve
        self._ffmpeg = ffmpeg
        self.fps = fps
        self._quality = quality
        self._keepalive = keepalive
        self.max_viewers = max_viewers
        self._max_frame_bytes = max_frame_bytes
        self._max_age = max_frame_age
        self._busy_timeout = busy_timeout
        self._warmup = warmup_frames
        self._feeds: dict[str, _Feed] = {}
        self._closed = False
        self.frames_served = 0

    # -- queries -----------------------------------------------------------------------------

    def viewers(self, camera_id: str) -> int:
        feed = self._feeds.get(camera_id)
        return feed.viewers if feed is not None else 0

    def running(self, camera_id: str) -> bool:
        feed = self._feeds.get(camera_id)
        return feed is not None and feed.task is not None and not feed.task.done()

    def restarts(self, camera_id: str) -> int:
        feed = self._feeds.get(camera_id)
        return feed.restarts if feed is not None else 0

    def fresh_frame(self, camera_id: str) -> bytes | None:
        """The running feed's newest frame when it is at most ``max_frame_age`` s old."""
        feed = self._feeds.get(camera_id)
        if feed is None or feed.frame is None or not self.running(camera_id):
            return None
        if time.monotonic() - feed.stamp > self._max_age:
            return None
        return feed.frame

    # -- use ---------------------------------------------------------------------------------

    async def snapshot(self, camera_id: str, timeout: float) -> bytes:
        """A current JPEG: the running reader's newest frame, else the first frame of a reader
        started now (kept running ``keepalive`` s, so the next snapshot is immediate)."""
        frame = self.fresh_frame(camera_id)
        feed = self._ensure(camera_id)
        feed.demand_until = time.monotonic() + self._keepalive
        if frame is not None:
            return frame
        viewer = Viewer(self, feed)
        return await viewer.next(timeout)

    @contextlib.asynccontextmanager
    async def viewer(self, camera_id: str) -> AsyncIterator[Viewer]:
        """Register an MJPEG viewer for the duration of the block."""
        feed = self._feeds.get(camera_id)
        if feed is not None and feed.viewers >= self.max_viewers:
            raise TooManyViewers(
                f"camera {camera_id} already has {feed.viewers} viewers",
                f"limit: {self.max_viewers}",
            )
        feed = self._ensure(camera_id)
        feed.viewers += 1
        try:
            yield Viewer(self, feed)
        finally:
            feed.viewers -= 1
            feed.demand_until = max(feed.demand_until, time.monotonic() + self._keepalive)
            feed.wake()

    def _ensure(self, camera_id: str) -> _Feed:
        if self._closed:
            raise FrameError("the daemon is shutting down")
        feed = self._feeds.get(camera_id)
        if feed is None:
            feed = self._feeds[camera_id] = _Feed(camera_id)
        if feed.task is None or feed.task.done():
            feed.demand_until = time.monotonic() + self._keepalive
            feed.frame, feed.error = None, None
            feed.task = asyncio.create_task(self._run(feed), name=f"frames-{camera_id}")
        return feed

    def _wanted(self, feed: _Feed) -> bool:
        return not self._closed and (feed.viewers > 0 or time.monotonic() < feed.demand_until)

    # -- the reader --------------------------------------------------------------------------

    async def _run(self, feed: _Feed) -> None:
        failures = 0
        try:
            while self._wanted(feed):
                if self._recordings.latest_frame(feed.camera_id) is not None:
                    await self._follow_recording(feed)
                    continue
                seq = feed.seq
                ok = await self._read_once(feed)
                if ok or not self._wanted(feed):
                    failures = 0
                    continue
                failures = 1 if feed.seq != seq else failures + 1  # it had worked: start over
                feed.restarts += 1
                if failures > len(_RESTART_BACKOFF_S):
                    log.warning("frames of %s: giving up: %s", feed.camera_id, feed.error)
                    return
                await self._idle(feed, _RESTART_BACKOFF_S[failures - 1])
        except Exception as exc:  # a feed never takes the daemon down
            feed.error = str(exc)
            log.exception("frame reader of %s failed", feed.camera_id)
        finally:
            feed.wake()

    async def _idle(self, feed: _Feed, seconds: float) -> None:
        """Wait ``seconds`` or until the feed's state changes (a viewer leaves)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(feed.changed.wait(), seconds)

    async def _read_once(self, feed: _Feed) -> bool:
        """Run one reader process until it ends; True when it ended on purpose or was
        preempted by a recording (no restart penalty)."""
        resolved = await self._resolve(feed.camera_id)
        if resolved is None:
            feed.error = f"camera {feed.camera_id} cannot be read now"
            return False
        source, reads_device = resolved
        try:
            handle = await self._supervisor.start(
                build_mjpeg_args(self._ffmpeg, source, self.fps, self._quality, self._warmup),
                camera_id=feed.camera_id,
                role="frames",
                reader=reads_device,
                exclusive=source.exclusive and reads_device,
                busy_timeout=self._busy_timeout,
                raw_stdout=True,
                preemptible=True,
            )
        except MediaError as exc:
            feed.error = exc.detail
            return False
        except Exception as exc:  # DeviceBusy and friends
            feed.error = str(exc)
            return False
        feed.handle = handle
        assert handle.process is not None and handle.process.stdout is not None
        stdout = handle.process.stdout
        try:
            await self._pump(feed, stdout)
        finally:
            # Read stdout to its end while the process stops: asyncio reports a child's exit
            # only once its pipes are closed, and a full, unread pipe would never close.
            drain = asyncio.create_task(_drain(stdout))
            try:
                if handle.running:
                    await self._supervisor.stop(handle)
            finally:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(drain, _DRAIN_TIMEOUT_S)
            feed.handle = None
        if not self._wanted(feed) or self._recordings.latest_frame(feed.camera_id) is not None:
            return True
        feed.error = handle.error_summary()
        return False

    async def _pump(self, feed: _Feed, stdout: asyncio.StreamReader) -> None:
        parser = MpjpegParser(self._max_frame_bytes)
        while self._wanted(feed):
            # Bounded reads: demand is checked at least every _DEMAND_CHECK_S, frames or not.
            try:
                chunk = await asyncio.wait_for(stdout.read(_READ_CHUNK), _DEMAND_CHECK_S)
            except TimeoutError:
                continue
            if not chunk:
                return
            try:
                frames = parser.feed(chunk)
            except ValueError as exc:
                feed.error = str(exc)
                return
            if frames:
                feed.publish(frames[-1])

    async def _follow_recording(self, feed: _Feed) -> None:
        """A recording holds the device: serve its latest-frame JPEG while it runs."""
        last_mtime = 0.0
        while self._wanted(feed):
            path = self._recordings.latest_frame(feed.camera_id)
            if path is None:
                return
            data, mtime = await asyncio.to_thread(_read_if_newer, path, last_mtime)
            if data is not None and is_complete_jpeg(data):
                last_mtime = mtime
                feed.publish(data)
            await self._idle(feed, _RECORDING_POLL_S)

    async def close(self) -> None:
        self._closed = True
        tasks = [f.task for f in self._feeds.values() if f.task is not None]
        for feed in self._feeds.values():
            feed.wake()
        if tasks:
            await asyncio.wait(tasks, timeout=10)


async def _drain(stdout: asyncio.StreamReader) -> None:
    while await stdout.read(_READ_CHUNK):
        pass


def _read_if_newer(path: Path, mtime: float) -> tuple[bytes | None, float]:
    try:
        stamp = path.stat().st_mtime
        if stamp <= mtime:
            return None, mtime
        return path.read_bytes(), stamp
    except FileNotFoundError:
        return None, mtime
