"""The files MediaMTX writes when it records a path, and how they get the project's names.

MediaMTX names a segment from the time of its first sample in *its own* local time zone and
creates the file only when the first part is complete (``internal/recordstore/path.go``,
``Path.Encode``; ``internal/recorder/format_fmp4_segment.go``, ``closeCurPart``). A name
built from our request time in UTC is therefore a file that never exists. So:

* MediaMTX records into a staging directory, ``<recordings>/.mediamtx`` (hidden: never
  listed), with ``recordPath`` :data:`STAGING_PATTERN` = ``%path_%s_%f``: Unix seconds and
  microseconds, the same under any time zone (``%f`` is also what ``playback: yes`` requires
  of every ``recordPath``, ``internal/conf/path.go``).
* Each new segment gets a hard link in the recordings directory named like every other
  recording, ``<camera>_<YYYY-MM-DD_HH-MM-SS>.mp4`` in UTC (:func:`link_segment`). It is the
  same file (MediaMTX keeps writing through its open descriptor), so the name we announce
  exists from the moment we announce it, and grows.
* A segment is complete when MediaMTX has written its duration into the ``mvhd`` box, which
  it does when it closes the file (``writeDuration``); :func:`fmp4_finalized` reads that.
* When the recording ends, the staging names are removed (:func:`settle_staging`).
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
from datetime import UTC, datetime
from pathlib import Path

from camera_service.storage.names import generated_filename

STAGING_DIR = ".mediamtx"
STAGING_PATTERN = "%path_%s_%f"
_STAGED_RE = re.compile(r"^(?P<id>.+)_(?P<sec>\d{10})_(?P<us>\d{6})\.mp4$")
_HEAD_BYTES = 4096


def staging_dir(recordings_dir: Path) -> Path:
    return Path(recordings_dir) / STAGING_DIR


def record_path(recordings_dir: Path) -> str:
    """MediaMTX ``recordPath`` for the recordings directory (absolute; no extension)."""
    return str(staging_dir(Path(recordings_dir).resolve()) / STAGING_PATTERN)


def staged_start(name: str, camera_id: str) -> datetime | None:
    """Start time (UTC) of a staged segment name of ``camera_id``; None for other names."""
    match = _STAGED_RE.match(name)
    if match is None or match.group("id") != camera_id:
        return None
    return datetime.fromtimestamp(int(match.group("sec")), UTC).replace(
        microsecond=int(match.group("us"))
    )


def fmp4_finalized(head: bytes) -> bool:
    """True when the ``mvhd`` of a MediaMTX fMP4 segment carries a duration.

    Layout written by MediaMTX: ``ftyp`` box, then ``moov`` whose first child is ``mvhd``
    (version 0: flags, creation, modification, timescale, duration as 32-bit fields).
    """
    if len(head) < 8 or head[4:8] != b"ftyp":
        return False
    ftyp = struct.unpack(">I", head[0:4])[0]
    moov = ftyp
    if len(head) < moov + 36 or head[moov + 4 : moov + 8] != b"moov":
        return False
    mvhd = moov + 8
    if head[mvhd + 4 : mvhd + 8] != b"mvhd" or head[mvhd + 8] != 0:
        return False
    duration = struct.unpack(">I", head[mvhd + 24 : mvhd + 28])[0]
    return bool(duration)


# -- blocking I/O (run in a thread) -----------------------------------------------------


def staged_segments(recordings_dir: Path, camera_id: str) -> dict[Path, datetime]:
    """Staged segment files of the camera: path → start time."""
    found: dict[Path, datetime] = {}
    try:
        entries = list(os.scandir(staging_dir(recordings_dir)))
    except OSError:
        return found
    for entry in entries:
        start = staged_start(entry.name, camera_id)
        if start is not None and entry.is_file(follow_symlinks=False):
            found[Path(entry.path)] = start
    return found


def read_head(path: Path) -> bytes:
    try:
        with path.open("rb") as fh:
            return fh.read(_HEAD_BYTES)
    except OSError:
        return b""


def link_segment(staged: Path, recordings_dir: Path, camera_id: str, start: datetime) -> Path:
    """Hard-link a staged segment under its generated UTC name; returns the visible path."""
    directory = Path(recordings_dir)
    while True:
        name = generated_filename(camera_id, ".mp4", start, lambda n: (directory / n).exists())
        target = directory / name
        try:
            os.link(staged, target)
        except FileExistsError:  # taken between the check and the link: next name
            continue
        return target


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def settle_staging(recordings_dir: Path, camera_id: str) -> list[Path]:
    """Give every staged segment of the camera its visible name and drop the staged name.

    For segments left over by a recording that ended without cleanup (the daemon stopped);
    call it only while no recording of the camera is active. Returns the visible paths made.
    """
    made: list[Path] = []
    for staged, start in staged_segments(recordings_dir, camera_id).items():
        with contextlib.suppress(OSError):
            if staged.stat().st_nlink < 2:
                made.append(link_segment(staged, recordings_dir, camera_id, start))
            staged.unlink()
    return made
