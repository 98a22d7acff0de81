"""Snapshots: one-frame captures, or a copy of the recording process's latest frame.

While a camera is recorded, the recording FFmpeg is the camera's single reader: the snapshot
copies its latest-frame JPEG (PNG is converted from that copy, never from the device). Files are
published atomically (temporary file, then a no-clobber hard link), so a partial image never
appears under the final name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from camera_service.media.capture import warmup_filter
from camera_service.media.errors import DeviceBusy, InvalidTarget, MediaError
from camera_service.media.ffmpeg import ProcessSupervisor
from camera_service.media.recordings import RecordingManager, resolve_output_path
from camera_service.media.source import CaptureSource

log = logging.getLogger(__name__)

SNAPSHOT_FORMATS = ("jpg", "png")
FallbackSource = Callable[[CaptureSource], CaptureSource | None]
_FRAME_POLL = 0.05


@dataclass(frozen=True)
class SnapshotResult:
    device: str
    filename: str
    path: Path
    size: int
    timestamp: datetime
    format: str
    origin: str  # "capture" (device opened for one frame), "recording" or "live" (a reader's)


def _codec_args(fmt: str) -> list[str]:
    if fmt == "jpg":
        return ["-c:v", "mjpeg", "-q:v", "2"]
    if fmt == "png":
        return ["-c:v", "png"]
    raise InvalidTarget(f"unsupported snapshot format: {fmt!r}")


def build_capture_args(
    ffmpeg: str, source: CaptureSource, output: Path, fmt: str, warmup_frames: int = 0
) -> list[str]:
    """FFmpeg argv that grabs one frame of the source into ``output``; a V4L2 camera opened
    for it skips ``warmup_frames`` first (auto-exposure and white balance settle meanwhile)."""
    v4l2 = source.kind == "v4l2"
    warmup = warmup_filter(warmup_frames) if v4l2 else []
    # info for a V4L2 camera: FFmpeg's "Input #0, video4linux2" line says the camera streams
    # (VIDIOC_STREAMON is done), so its controls can be written again during the warm-up.
    return [
        *(ffmpeg, "-hide_banner", "-loglevel", "info" if v4l2 else "error", "-nostats", "-y"),
        *source.input_args(),
        *("-map", "0:v:0", "-an", *warmup, "-frames:v", "1"),
        *_codec_args(fmt),
        *("-update", "1", "-f", "image2", str(output)),
    ]


def build_convert_args(ffmpeg: str, image: Path, output: Path, fmt: str) -> list[str]:
    """FFmpeg argv that converts an image file (not a device) to ``fmt``."""
    return [
        *(ffmpeg, "-hide_banner", "-loglevel", "error", "-nostats", "-y"),
        *("-f", "image2", "-i", str(image), "-frames:v", "1"),
        *_codec_args(fmt),
        *("-update", "1", "-f", "image2", str(output)),
    ]


def is_complete_jpeg(data: bytes) -> bool:
    return data[:2] == b"\xff\xd8" and data.rstrip(b"\x00")[-2:] == b"\xff\xd9"


def publish(tmp: Path, final: Path) -> None:
    """Atomically give ``tmp`` the name ``final``; never overwrites an existing file."""
    try:
        os.link(tmp, final)
    except FileExistsError as exc:
        raise InvalidTarget(f"file already exists: {final.name}") from exc
    finally:
        tmp.unlink(missing_ok=True)


class SnapshotService:
    """Takes snapshots without ever opening a single-reader device twice."""

    def __init__(
        self,
        supervisor: ProcessSupervisor,
        recordings: RecordingManager,
        snapshots_dir: Path,
        *,
        ffmpeg: str = "ffmpeg",
        capture_timeout: float = 10.0,
        frame_wait: float = 5.0,
        max_frame_age: float = 5.0,
        busy_timeout: float = 5.0,
        fallback_source: FallbackSource | None = None,
        warmup_frames: int = 0,
    ) -> None:
        """``fallback_source``: where to read a frame when an exclusive camera is held by a
        reader other than a recording (e.g. the MediaMTX RTSP URL of its stream)."""
        self._supervisor = supervisor
        self._recordings = recordings
        self.snapshots_dir = Path(snapshots_dir)
        self._ffmpeg = ffmpeg
        self._capture_timeout = capture_timeout
        self._frame_wait = frame_wait
        self._max_frame_age = max_frame_age
        self._busy_timeout = busy_timeout
        self._fallback = fallback_source
        self._warmup_frames = warmup_frames
        # The live-frame reader's newest fresh frame, when one runs (set by the composition
        # root): a snapshot then copies it instead of waiting for the device.
        self.live_frame: Callable[[str], bytes | None] | None = None

    async def take(
        self, source: CaptureSource, filename: str | None = None, format: str = "jpg"
    ) -> SnapshotResult:
        if format not in SNAPSHOT_FORMATS:
            raise InvalidTarget(f"unsupported snapshot format: {format!r}")
        now = datetime.now(UTC)
        final = await asyncio.to_thread(
            resolve_output_path,
            self.snapshots_dir,
            filename,
            f".{format}",
            source.camera_id,
            now,
            Path.exists,
        )
        await asyncio.to_thread(self._check_target, final)
        tmp = final.with_name(f".{final.name}.{secrets.token_hex(4)}.tmp")
        try:
            origin = await self._produce(source, tmp, format)
            await asyncio.to_thread(publish, tmp, final)
        finally:
            await asyncio.to_thread(tmp.unlink, missing_ok=True)
        size = (await asyncio.to_thread(final.stat)).st_size
        log.info("snapshot of %s (%s): %s, %d bytes", source.camera_id, origin, final.name, size)
        return SnapshotResult(
            source.camera_id, final.name, final, size, datetime.now(UTC), format, origin
        )

    @staticmethod
    def _check_target(final: Path) -> None:
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            raise InvalidTarget(f"file already exists: {final.name}")

    async def _produce(self, source: CaptureSource, tmp: Path, fmt: str) -> str:
        # No await between this check and the capture's registration in the supervisor.
        if self._recordings.latest_frame(source.camera_id) is not None:
            await self._from_recording(source.camera_id, tmp, fmt)
            return "recording"
        live = self.live_frame(source.camera_id) if self.live_frame is not None else None
        if live is not None:
            await self._write_frame(source.camera_id, live, tmp, fmt)
            return "live"
        readable = self._readable_source(source)
        await self._capture(readable, tmp, fmt, reads_device=readable is source)
        return "capture"

    def _readable_source(self, source: CaptureSource) -> CaptureSource:
        """The source itself, or the fallback when another reader holds the device."""
        if not source.exclusive:
            return source
        holders = [h for h in self._supervisor.readers(source.camera_id) if h.role != "snapshot"]
        if not holders:
            return source  # free, or another snapshot that ends soon (waited for)
        alternative = self._fallback(source) if self._fallback is not None else None
        if alternative is None:
            roles = ", ".join(sorted({h.role for h in holders}))
            raise DeviceBusy(f"camera {source.camera_id} is in use", f"device held by: {roles}")
        return alternative

    async def _capture(
        self, source: CaptureSource, tmp: Path, fmt: str, *, reads_device: bool
    ) -> None:
        result = await self._supervisor.run_once(
            build_capture_args(self._ffmpeg, source, tmp, fmt, self._warmup_frames),
            self._capture_timeout,
            camera_id=source.camera_id,
            role="snapshot",
            reader=reads_device,
            exclusive=source.exclusive and reads_device,
            busy_timeout=self._busy_timeout,
        )
        if not result.ok or not await asyncio.to_thread(_non_empty, tmp):
            raise MediaError("ffmpeg could not capture a frame", result.error_summary())

    async def _from_recording(self, camera_id: str, tmp: Path, fmt: str) -> None:
        await self._write_frame(camera_id, await self._latest_frame(camera_id), tmp, fmt)

    async def _write_frame(self, camera_id: str, data: bytes, tmp: Path, fmt: str) -> None:
        if fmt == "jpg":
            await asyncio.to_thread(tmp.write_bytes, data)
            return
        src = tmp.with_name(tmp.name + ".jpg")
        try:
            await asyncio.to_thread(src.write_bytes, data)
            result = await self._supervisor.run_once(
                build_convert_args(self._ffmpeg, src, tmp, fmt),
                self._capture_timeout,
                camera_id=camera_id,
                role="convert",
            )
        finally:
            await asyncio.to_thread(src.unlink, missing_ok=True)
        if not result.ok or not await asyncio.to_thread(_non_empty, tmp):
            raise MediaError("ffmpeg could not convert the frame", result.error_summary())

    async def _latest_frame(self, camera_id: str) -> bytes:
        """The recording's latest complete, fresh JPEG, waiting (bounded) for one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._frame_wait
        while True:
            path = self._recordings.latest_frame(camera_id)
            if path is None:
                raise MediaError(
                    "recording ended before a frame was available",
                    f"camera {camera_id} stopped recording",
                )
            data, age = await asyncio.to_thread(_read_frame, path)
            if data is not None and is_complete_jpeg(data) and age <= self._max_frame_age:
                return data
            if loop.time() >= deadline:
                raise MediaError(
                    "no frame from the recording process",
                    f"no fresh frame within {self._frame_wait:g} s",
                )
            await asyncio.sleep(_FRAME_POLL)


def _read_frame(path: Path) -> tuple[bytes | None, float]:
    """The frame file's bytes (None if absent) and its age in seconds."""
    with contextlib.suppress(FileNotFoundError):
        age = time.time() - path.stat().st_mtime
        return path.read_bytes(), age
    return None, 0.0


def _non_empty(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False
