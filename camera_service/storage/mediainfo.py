"""What ffprobe says about a stored file: running it, the container format, the info records."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict

from camera_service.storage.errors import ProbeFailed
from camera_service.storage.listing import FileEntry
from camera_service.storage.names import iso_utc, stamp_from_name


class RecordingInfo(TypedDict):
    filename: str
    device: str | None
    file_size: int
    duration: float | None
    format: str
    created_time: str
    modified_time: str


class SnapshotInfo(TypedDict):
    filename: str
    device: str | None
    file_size: int
    resolution: str
    created_time: str
    modified_time: str


def mp4_top_level_boxes(path: Path, limit: int = 64) -> list[str]:
    """Types of the first ``limit`` top-level ISO-BMFF boxes of ``path`` (blocking)."""
    boxes: list[str] = []
    with path.open("rb") as fh:
        size_total = os.fstat(fh.fileno()).st_size
        pos = 0
        while pos + 8 <= size_total and len(boxes) < limit:
            fh.seek(pos)
            header = fh.read(16)
            size = int.from_bytes(header[:4], "big")
            boxes.append(header[4:8].decode("latin-1"))
            if size == 1 and len(header) == 16:
                size = int.from_bytes(header[8:16], "big")
            if size == 0:
                break
            if size < 8:
                break
            pos += size
    return boxes


def container_format(format_name: str, path: Path) -> str:
    """Map ffprobe's ``format_name`` to the API's ``fmp4`` / ``mp4`` / ``mkv`` (or pass it on)."""
    names = set(format_name.split(","))
    if "matroska" in names:
        return "mkv"
    if "mp4" in names or "mov" in names:
        return "fmp4" if "moof" in mp4_top_level_boxes(path) else "mp4"
    return format_name


async def run_ffprobe(binary: str, path: Path, args: list[str], timeout_s: float) -> dict[str, Any]:
    """Run ffprobe on ``path`` (absolute) with JSON output and return the parsed document."""
    cmd = [binary, "-v", "error", "-of", "json", *args, str(path)]
    try:
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        raise ProbeFailed(path.name, f"cannot run {binary}: {exc}") from exc
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await proc.communicate()
    except TimeoutError as exc:
        proc.kill()
        await proc.wait()
        raise ProbeFailed(path.name, f"timed out after {timeout_s} s") from exc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        raise ProbeFailed(path.name, err.decode(errors="replace").strip()[-300:] or "error")
    try:
        doc = json.loads(out)
    except json.JSONDecodeError as exc:
        raise ProbeFailed(path.name, "unreadable ffprobe output") from exc
    if not isinstance(doc, dict):
        raise ProbeFailed(path.name, "unexpected ffprobe output")
    return doc


def float_or_none(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def dimensions(doc: dict[str, Any]) -> tuple[int, int]:
    """Width and height of the first stream of an ffprobe document; (0, 0) when absent."""
    streams = doc.get("streams")
    if not isinstance(streams, list) or not streams or not isinstance(streams[0], dict):
        return 0, 0
    try:
        return int(streams[0].get("width", 0)), int(streams[0].get("height", 0))
    except (TypeError, ValueError):
        return 0, 0


def _parse_iso(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def created_time(entry: FileEntry, tag: object) -> str:
    """Creation time: the stamp in a generated name, else the media tag, else mtime."""
    when = stamp_from_name(entry.filename) or _parse_iso(tag)
    return iso_utc(when.timestamp()) if when else iso_utc(entry.mtime)
