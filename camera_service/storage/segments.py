"""Continuous-recording segments on disk: names, run records, the index, roll-over plans.

Layout under the segments directory (default ``<recordings_dir>/.continuous``)::

    <camera>/<camera>_<YYYYmmddTHHMMSS>Z_<run>.mp4   one segment (fragmented MP4)
    <camera>/<run>.json                              the FFmpeg run: wall clock of media time 0
    <camera>/<run>.csv                               FFmpeg's segment list: name,start,end

``<run>`` is ``c`` (continuous) or ``m`` (motion buffer) followed by 6 hex digits, unique per
FFmpeg process. A segment's wall-clock start and end are the run's ``t0`` plus the media times
FFmpeg wrote to the run's list when it closed the segment, so consecutive segments of one run
meet exactly (no gap, no overlap). The segment a killed process was writing is not in the list;
:func:`close_run` probes its duration and appends it, so every finished run has a full list.

Everything here is blocking file I/O or pure logic; callers run it in threads.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

GB = 10**9
SEGMENT_EXT = ".mp4"
RunMode = Literal["c", "m"]
_STAMP = "%Y%m%dT%H%M%SZ"
SEGMENT_RE = re.compile(r"^(?P<device>.+)_(?P<stamp>\d{8}T\d{6}Z)_(?P<run>[cm][0-9a-f]{6})\.mp4$")
RUN_RE = re.compile(r"^[cm][0-9a-f]{6}$")
_MAX_RUN_FILE = 1 << 20  # bytes: a run record or list larger than this is not ours


@dataclass(frozen=True)
class Segment:
    device: str
    filename: str
    path: Path
    run: str
    start: float  # epoch seconds
    end: float  # epoch seconds; for the segment being written: its last modification
    size: int
    complete: bool  # closed by FFmpeg (or probed after a crash)

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.start)

    @property
    def mode(self) -> str:
        return "motion" if self.run.startswith("m") else "continuous"


@dataclass(frozen=True)
class RunRecord:
    run: str
    device: str
    t0: float  # epoch seconds of media time 0
    segment_seconds: int


def new_run_id(mode: RunMode) -> str:
    return mode + secrets.token_hex(3)


def segment_pattern(camera_dir: Path, camera_id: str, run: str) -> str:
    """The FFmpeg ``-strftime 1`` output pattern of a run (UTC: FFmpeg runs with TZ=UTC)."""
    return str(camera_dir / f"{camera_id}_{_STAMP}_{run}{SEGMENT_EXT}")


def stamp_of(filename: str) -> float | None:
    match = SEGMENT_RE.match(filename)
    if match is None:
        return None
    when = datetime.strptime(match["stamp"], _STAMP).replace(tzinfo=UTC)
    return when.timestamp()


def camera_dir(root: Path, camera_id: str) -> Path:
    return root / camera_id


# --------------------------------------------------------------------------- run records


def write_run(directory: Path, record: RunRecord) -> None:
    """Atomically (re)write the run record."""
    directory.mkdir(parents=True, exist_ok=True)
    data = {
        "run": record.run,
        "device": record.device,
        "t0": record.t0,
        "segment_seconds": record.segment_seconds,
    }
    tmp = directory / f".{record.run}.json.tmp"
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, directory / f"{record.run}.json")


def read_run(directory: Path, run: str) -> RunRecord | None:
    path = directory / f"{run}.json"
    try:
        if path.stat().st_size > _MAX_RUN_FILE:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        return RunRecord(
            str(data["run"]), str(data["device"]), float(data["t0"]), int(data["segment_seconds"])
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def parse_segment_list(text: str) -> dict[str, tuple[float, float]]:
    """FFmpeg's CSV segment list → ``{filename: (start, end)}`` in media seconds."""
    entries: dict[str, tuple[float, float]] = {}
    for row in csv.reader(io.StringIO(text)):
        if len(row) != 3:
            continue
        with contextlib.suppress(ValueError):
            entries[Path(row[0]).name] = (float(row[1]), float(row[2]))
    return entries


def read_segment_list(directory: Path, run: str) -> dict[str, tuple[float, float]]:
    path = directory / f"{run}.csv"
    try:
        with path.open("rb") as handle:
            raw = handle.read(_MAX_RUN_FILE)
    except OSError:
        return {}
    return parse_segment_list(raw.decode("utf-8", "replace"))


def append_segment(directory: Path, run: str, filename: str, start: float, end: float) -> None:
    with (directory / f"{run}.csv").open("a", encoding="utf-8") as handle:
        handle.write(f"{filename},{start:.6f},{end:.6f}\n")


# --------------------------------------------------------------------------- index


def _segment_files(directory: Path) -> list[tuple[str, os.stat_result, re.Match[str]]]:
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for entry in entries:
        match = SEGMENT_RE.match(entry.name)
        if match is None or not entry.is_file(follow_symlinks=False):
            continue
        with contextlib.suppress(FileNotFoundError):
            found.append((entry.name, entry.stat(follow_symlinks=False), match))
    return found


def scan_camera(root: Path, camera_id: str) -> list[Segment]:
    """Every segment of the camera, oldest first.

    A segment missing from its run's list (``complete`` false) is the one being written or the
    last one of a run that was killed; its end is its modification time until the recorder
    probed it and appended it to the list."""
    directory = camera_dir(root, camera_id)
    files = _segment_files(directory)
    runs: dict[str, tuple[RunRecord | None, dict[str, tuple[float, float]]]] = {}
    segments: list[Segment] = []
    for name, st, match in files:
        if match["device"] != camera_id:
            continue
        run = match["run"]
        if run not in runs:
            runs[run] = (read_run(directory, run), read_segment_list(directory, run))
        record, listed = runs[run]
        stamp = stamp_of(name) or st.st_mtime
        if record is not None and name in listed:
            start, end = listed[name]
            segments.append(
                Segment(
                    camera_id,
                    name,
                    directory / name,
                    run,
                    record.t0 + start,
                    record.t0 + end,
                    st.st_size,
                    True,
                )
            )
            continue
        # Not (yet) listed: starts where the run's listed segments end.
        start_at = stamp
        if record is not None:
            ends = [end for _start, end in listed.values()]
            start_at = record.t0 + max(ends) if ends else record.t0
        end_at = max(st.st_mtime, start_at)
        segments.append(
            Segment(camera_id, name, directory / name, run, start_at, end_at, st.st_size, False)
        )
    segments.sort(key=lambda s: (s.start, s.filename))
    return segments


def cameras_with_segments(root: Path) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(root) if e.is_dir(follow_symlinks=False))
    except FileNotFoundError:
        return []


def unlisted(directory: Path, run: str) -> list[str]:
    """Segment files of ``run`` missing from its list (the one a killed process wrote)."""
    listed = read_segment_list(directory, run)
    return sorted(
        name
        for name, _st, match in _segment_files(directory)
        if match["run"] == run and name not in listed
    )


def runs_in(directory: Path) -> list[str]:
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted({n[:-5] for n in names if n.endswith(".json") and RUN_RE.match(n[:-5])})


def remove_run_if_empty(directory: Path, run: str) -> bool:
    """Drop the run's record and list once none of its segments is left."""
    if any(match["run"] == run for _n, _st, match in _segment_files(directory)):
        return False
    for suffix in (".json", ".csv"):
        with contextlib.suppress(FileNotFoundError):
            (directory / f"{run}{suffix}").unlink()
    return True


# --------------------------------------------------------------------------- selection


def plan_retention(
    segments: Iterable[Segment],
    *,
    now: float,
    retain_days: float | None,
    retain_gb: float | None,
    protected: set[Path],
) -> list[Segment]:
    """Segments of one camera to delete: older than ``retain_days`` (by end) and, oldest first,
    whatever keeps the camera above ``retain_gb``. Never a protected (written/read) file."""
    ordered = sorted(segments, key=lambda s: (s.start, s.filename))
    doomed: list[Segment] = []
    if retain_days is not None:
        horizon = now - retain_days * 86400
        doomed += [s for s in ordered if s.end < horizon and s.path not in protected]
    if retain_gb is not None:
        gone = {s.path for s in doomed}
        kept = [s for s in ordered if s.path not in gone]
        total = sum(s.size for s in kept)
        limit = int(retain_gb * GB)
        for seg in kept:
            if total <= limit:
                break
            if seg.path in protected:
                continue
            doomed.append(seg)
            total -= seg.size
    return doomed


def plan_rollover(
    segments: Iterable[Segment], need_bytes: int, protected: set[Path]
) -> list[Segment]:
    """Oldest segments (any camera) whose deletion frees at least ``need_bytes``."""
    doomed: list[Segment] = []
    freed = 0
    for seg in sorted(segments, key=lambda s: (s.start, s.filename)):
        if freed >= need_bytes:
            break
        if seg.path in protected:
            continue
        doomed.append(seg)
        freed += seg.size
    return doomed


def delete_segments(segments: Iterable[Segment], protected: set[Path]) -> tuple[int, int]:
    """Delete; returns (count, bytes). Protected paths are skipped again at the last moment."""
    count = freed = 0
    touched: set[tuple[Path, str]] = set()
    for seg in segments:
        if seg.path in protected:
            continue
        try:
            seg.path.unlink()
        except FileNotFoundError:
            continue
        count += 1
        freed += seg.size
        touched.add((seg.path.parent, seg.run))
    for directory, run in touched:
        remove_run_if_empty(directory, run)
    return count, freed
