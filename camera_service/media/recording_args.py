"""Pure helpers of recordings: output names, FFmpeg argv, and how a finished process is judged
(no I/O; media/recordings.py runs them)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from camera_service.media.encoders import (
    SOFTWARE_ENCODER,
    EncodeOptions,
    encode_args,
    global_args,
)
from camera_service.media.errors import InvalidTarget
from camera_service.media.ffmpeg_output import summarize_stderr
from camera_service.media.source import CaptureSource
from camera_service.storage.errors import InvalidFilename
from camera_service.storage.names import generated_filename, with_extension


def frames_written(block: dict[str, str]) -> int:
    """Frames FFmpeg reported in a ``-progress`` block (``frame=``; with ``out_time_us`` as
    the witness for stream copies), 0 when it wrote nothing yet."""
    frames, media_us = (_count(block.get(key)) for key in ("frame", "out_time_us"))
    return frames if frames > 0 else (1 if media_us > 0 else 0)


def _count(value: str | None) -> int:
    try:
        return int(value or "0")
    except ValueError:  # "N/A" before the first packet
        return 0


# --------------------------------------------------------------------------- pure helpers


@dataclass(frozen=True)
class EncoderSettings:
    """H.264 settings for sources that are not H.264 already."""

    preset: str = "veryfast"
    bitrate: str = "2M"
    profile: str = "high"
    gop: int | None = None  # keyframe interval in frames; None → one second of frames
    tune: str | None = None
    codec: str = SOFTWARE_ENCODER  # the H.264 encoder (see media/encoders.py)


def resolve_output_path(
    directory: Path,
    filename: str | None,
    extension: str,
    camera_id: str,
    now: datetime,
    taken: Callable[[Path], bool] = lambda path: False,
) -> Path:
    """The output path in ``directory``, named by the storage rules (the same ones listing,
    download and deletion apply): a user's name gets ``extension`` when missing; otherwise
    ``<camera>_<UTC stamp>``, with ``_1``, ``_2``… when that is ``taken``."""
    try:
        if filename is not None:
            return directory / with_extension(filename, extension)
        name = generated_filename(camera_id, extension, now, lambda n: taken(directory / n))
    except InvalidFilename as exc:
        raise InvalidTarget(f"invalid filename: {exc}") from None
    return directory / name


# An H.264 source is copied: only the latest-frame output decodes it, and key frames suffice
# there (decoding every 1080p frame for a 2 fps JPEG would cost more than the whole copy).
_H264_KEY_FRAMES_ONLY = ("-skip_frame", "nokey")


def _video_codec_args(source: CaptureSource, encoder: EncoderSettings) -> list[str]:
    if source.is_h264:
        return ["-c:v", "copy"]
    gop = encoder.gop or source.fps or 15
    options = EncodeOptions(encoder.bitrate, encoder.preset, encoder.profile, encoder.tune)
    return encode_args(encoder.codec, options, gop)


def _container_args(fmt: str) -> list[str]:
    if fmt in ("fmp4", "mp4"):
        # mp4 too is written fragmented (crash-safe) and remuxed into a regular MP4 at the end
        # (media/remux.py).
        # Fragments of about a second: whatever was written stays playable after a SIGKILL.
        # -flush_packets: fragments reach the disk at once instead of sitting in a 32 KiB buffer.
        flags = "+frag_keyframe+empty_moov+default_base_moof"
        return [
            *("-movflags", flags, "-frag_duration", "1000000"),
            *("-flush_packets", "1", "-f", "mp4"),
        ]
    if fmt == "mkv":
        return ["-flush_packets", "1", "-f", "matroska"]
    raise InvalidTarget(f"unsupported recording format: {fmt!r}")


def build_recording_args(
    ffmpeg: str,
    source: CaptureSource,
    output: Path,
    fmt: str,
    duration: int | None,
    encoder: EncoderSettings,
    frame_path: Path,
    frame_rate: float = 2.0,
) -> list[str]:
    """FFmpeg argv: recording output plus a continuously updated latest-frame JPEG."""
    limit = ["-t", str(duration)] if duration is not None else []
    return [
        *(ffmpeg, "-hide_banner", "-loglevel", "warning", "-nostats"),
        *("-progress", "pipe:1", "-stats_period", "0.5", "-y"),
        *(_H264_KEY_FRAMES_ONLY if source.is_h264 else global_args(encoder.codec)),
        *source.input_args(),
        *("-map", "0:v:0", "-an"),
        *_video_codec_args(source, encoder),
        *limit,
        *_container_args(fmt),
        str(output),
        # Full-range yuv420p JPEG: avoids swscale's "deprecated pixel format" (yuvj) warnings.
        # round=up: the first frame leaves the fps filter at once, so FFmpeg reports progress
        # (and start_recording answers) ~0.2 s sooner than with the default rounding.
        *("-map", "0:v:0", "-an", "-vf", f"fps={frame_rate:g}:round=up,scale=out_range=full"),
        *("-pix_fmt", "yuv420p", "-strict", "unofficial", "-c:v", "mjpeg", "-q:v", "3"),
        *("-update", "1", "-atomic_writing", "1"),
        *limit,
        *("-f", "image2", str(frame_path)),
    ]


def recording_outcome(
    *,
    stop_reason: str | None,
    stop_error: bool,
    duration: int | None,
    returncode: int | None,
    timed_out: bool,
    stderr_tail: Iterable[str],
    stop_requested: bool = False,
) -> tuple[str, str]:
    """``(status, reason)`` of a finished recording process."""
    if stop_reason is not None:
        return ("ERROR" if stop_error else "STOPPED"), stop_reason
    if duration is not None and (returncode == 0 or timed_out):
        return "STOPPED", "duration_reached"
    if stop_requested:  # stopped by the supervisor itself (shutdown)
        return "STOPPED", "shutdown"
    if returncode == 0:
        return "STOPPED", "source_ended"
    return "ERROR", summarize_stderr(stderr_tail, returncode)
