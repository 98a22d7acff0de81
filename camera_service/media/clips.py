"""Clips: one file cut from continuous segments without re-encoding.

FFmpeg's concat demuxer reads the segments in order with ``inpoint`` on the first and
``outpoint`` on the last, and copies the packets (``-c copy``). Copying cannot start between
keyframes, so the clip starts at the last keyframe at or before the requested start; that
keyframe is found from the first segment's packet flags (no decoding), and the clip's real
end is its real start plus the duration of the written file (ffprobe).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from camera_service.media.errors import InvalidTarget, MediaError
from camera_service.media.ffmpeg import ProcessSupervisor
from camera_service.storage.errors import ProbeFailed
from camera_service.storage.mediainfo import run_ffprobe
from camera_service.storage.segments import Segment

CLIP_FORMATS = {"mp4": ".mp4", "mkv": ".mkv"}
PROBE_TIMEOUT_S = 15.0


class NoFootage(MediaError):
    """No segment covers the requested time range."""


@dataclass(frozen=True)
class ClipPlan:
    segments: tuple[Segment, ...]
    inpoint: float  # media seconds into the first segment
    outpoint: float | None  # media seconds into the last segment; None: to its end


@dataclass(frozen=True)
class ClipResult:
    path: Path
    start: float  # epoch seconds (the keyframe the clip starts on)
    end: float
    duration: float
    size: int


def plan_clip(segments: Sequence[Segment], start: float, end: float) -> ClipPlan:
    """The segments that cover [start, end] and the cut points in them (pure)."""
    if end <= start:
        raise InvalidTarget("end must be after start")
    chosen = sorted((s for s in segments if s.end > start and s.start < end), key=lambda s: s.start)
    if not chosen:
        raise NoFootage("no footage in the requested time range")
    first, last = chosen[0], chosen[-1]
    inpoint = max(0.0, start - first.start)
    outpoint = end - last.start if end < last.end else None
    return ClipPlan(tuple(chosen), inpoint, outpoint)


def concat_list(plan: ClipPlan, keyframe: float) -> str:
    """The ffconcat script for ``plan`` (first segment cut at ``keyframe``, a time in the
    file's own timestamps)."""
    lines = ["ffconcat version 1.0"]
    for index, seg in enumerate(plan.segments):
        path = str(seg.path).replace("'", "'\\''")
        lines.append(f"file '{path}'")
        if index == 0 and keyframe > 0:
            lines.append(f"inpoint {keyframe:.6f}")
        if index == len(plan.segments) - 1 and plan.outpoint is not None:
            lines.append(f"outpoint {plan.outpoint:.6f}")
    return "\n".join(lines) + "\n"


def keyframe_at_or_before(times: Sequence[float], target: float) -> float:
    earlier = [t for t in times if t <= target + 1e-6]
    return max(earlier) if earlier else 0.0


async def _probe_json(ffprobe: str, path: Path, args: list[str]) -> dict[str, Any]:
    try:
        return await run_ffprobe(ffprobe, path, args, PROBE_TIMEOUT_S)
    except ProbeFailed as exc:
        raise MediaError("ffprobe failed", exc.detail) from None


async def keyframe_times(ffprobe: str, path: Path) -> tuple[float, list[float]]:
    """A file's first video presentation time and its keyframes' times from it (s).

    The MP4 muxer shifts a file's timestamps by the encoder's B-frame delay (133 ms with
    libx264 veryfast at 15 fps); a segment's listed start is its first frame, so cut points
    are counted from that frame, not from the file's zero."""
    data = await _probe_json(
        ffprobe, path, ["-select_streams", "v:0", "-show_entries", "packet=pts_time,flags"]
    )
    times: list[float] = []
    origin: float | None = None
    packets = data.get("packets")
    for packet in packets if isinstance(packets, list) else []:
        if not isinstance(packet, dict):
            continue
        with contextlib.suppress(TypeError, ValueError, KeyError):
            pts = float(packet["pts_time"])
            origin = pts if origin is None else min(origin, pts)
            if "K" in str(packet.get("flags", "")):
                times.append(pts)
    start = origin or 0.0
    return start, [t - start for t in times]


async def media_duration(ffprobe: str, path: Path) -> float:
    """Duration (s) of a media file: the container's, else the last packet's end."""
    data = await _probe_json(ffprobe, path, ["-show_entries", "format=duration"])
    fmt = data.get("format")
    with contextlib.suppress(TypeError, ValueError, KeyError):
        duration = float(fmt["duration"]) if isinstance(fmt, dict) else 0.0
        if duration > 0:
            return duration
    packets = await _probe_json(
        ffprobe,
        path,
        ["-select_streams", "v:0", "-show_entries", "packet=pts_time,duration_time"],
    )
    end = 0.0
    items = packets.get("packets")
    for packet in items if isinstance(items, list) else []:
        with contextlib.suppress(TypeError, ValueError, KeyError):
            end = max(end, float(packet["pts_time"]) + float(packet.get("duration_time", 0)))
    return end


async def export(
    supervisor: ProcessSupervisor,
    ffmpeg: str,
    ffprobe: str,
    plan: ClipPlan,
    output: Path,
    fmt: str,
    timeout: float,
) -> ClipResult:
    """Write the clip to ``output`` (via a hidden temporary file, renamed when complete)."""
    if fmt not in CLIP_FORMATS:
        raise InvalidTarget(f"unsupported clip format: {fmt!r}")
    first = plan.segments[0]
    keyframe = inpoint = 0.0  # from the first segment's first frame; in its timestamps
    if plan.inpoint > 0:
        origin, times = await keyframe_times(ffprobe, first.path)
        keyframe = keyframe_at_or_before(times, plan.inpoint)
        inpoint = origin + keyframe if keyframe > 0 else 0.0
    tmp = output.with_name(f".{output.name}.part")
    script = output.with_name(f".{output.name}.ffconcat")
    await asyncio.to_thread(script.write_text, concat_list(plan, inpoint), "utf-8")
    container = ["-movflags", "+faststart", "-f", "mp4"] if fmt == "mp4" else ["-f", "matroska"]
    argv = [
        *(ffmpeg, "-hide_banner", "-loglevel", "error", "-nostats", "-y"),
        *("-f", "concat", "-safe", "0", "-i", str(script)),
        *("-map", "0:v:0", "-c", "copy", *container, str(tmp)),
    ]
    try:
        result = await supervisor.run_once(argv, timeout, role="clip")
        if not result.ok:
            raise MediaError("ffmpeg could not cut the clip", result.error_summary())
        duration = await media_duration(ffprobe, tmp)
        await asyncio.to_thread(os.replace, tmp, output)
    finally:
        await asyncio.to_thread(tmp.unlink, missing_ok=True)
        await asyncio.to_thread(script.unlink, missing_ok=True)
    size = (await asyncio.to_thread(output.stat)).st_size
    start = first.start + keyframe
    return ClipResult(output, start, start + duration, duration, size)
