"""Crash-safe plain MP4 recordings, and the clean-up of what a killed daemon left behind.

A regular MP4 has its index (``moov``) at the end: a process killed before it wrote it leaves a
file no player opens. So format ``mp4`` is recorded like ``fmp4`` (fragmented, playable up to
the last fragment whatever happens) and remuxed into a regular MP4 (``-c copy``, ``+faststart``)
when it ends. A hidden marker ``.<name>.remux`` next to the file says a remux is owed; the
next start finishes every owed remux, so a crash, a SIGKILL or a shutdown never costs footage.
The remuxed copy is written to a hidden temporary and renamed over the original only when
FFmpeg succeeded: at every moment the listed file is a playable recording.

Latest-frame directories (``camera-service-frames-<pid>-*`` in the temporary directory) of
daemons that are gone are removed at start as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from camera_service.media.ffmpeg import ProcessSupervisor

log = logging.getLogger(__name__)

MARKER_SUFFIX = ".remux"
TEMP_SUFFIX = ".remux-tmp.mp4"
FRAMES_PREFIX = "camera-service-frames-"
# Remux copies packets: budget 30 s plus 1 s per 20 MB (a slow SD card still does far more).
REMUX_BASE_S = 30.0
REMUX_BYTES_PER_S = 20_000_000
# Frame directories without a pid in their name (older versions) are removed when nothing
# has been written into them for this long (a recording updates its frame twice a second).
LEGACY_FRAMES_AGE_S = 300.0

_PID_DIR = re.compile(rf"^{re.escape(FRAMES_PREFIX)}(\d+)-")


def marker_for(path: Path) -> Path:
    return path.with_name(f".{path.name}{MARKER_SUFFIX}")


def temp_for(path: Path) -> Path:
    return path.with_name(f".{path.name}{TEMP_SUFFIX}")


def remux_argv(ffmpeg: str, source: Path, target: Path) -> list[str]:
    """FFmpeg argv: every stream of ``source`` copied into a regular MP4 ``target``."""
    return [
        *(ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y"),
        *("-i", str(source), "-map", "0", "-c", "copy"),
        *("-movflags", "+faststart", "-f", "mp4", str(target)),
    ]


def remux_time_limit(size: int) -> float:
    return REMUX_BASE_S + size / REMUX_BYTES_PER_S


async def remux(supervisor: ProcessSupervisor, ffmpeg: str, path: Path) -> bool:
    """Turn the fragmented recording ``path`` into a regular MP4 in place; clear its marker.

    True when ``path`` is now a regular MP4. On failure the fragmented file (playable) stays;
    the marker is cleared when FFmpeg gave up on the file (no retry at every start), kept when
    FFmpeg was killed (time limit, shutdown) so the next start tries again.
    """
    size = await asyncio.to_thread(_size_or_clear, path)
    if size is None:
        return False
    temp = temp_for(path)
    try:
        result = await supervisor.run_once(
            remux_argv(ffmpeg, path, temp), remux_time_limit(size), role="remux"
        )
    except Exception as exc:  # cannot start FFmpeg: keep the playable fragmented file
        log.warning("remux of %s not started: %s", path.name, exc)
        await asyncio.to_thread(temp.unlink, missing_ok=True)
        return False
    # Killed (its time limit, or the daemon shutting down): the marker stays for the next start.
    interrupted = result.returncode < 0 or result.timed_out
    done = await asyncio.to_thread(_settle, path, result.ok, not interrupted)
    if not done:
        summary = result.error_summary()
        log.warning("remux of %s failed (%s); kept as fragmented MP4", path.name, summary)
    return done


def _size_or_clear(path: Path) -> int | None:
    """Size of a recording owed a remux; None (marker cleared) when there is nothing to do."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        size = 0
    if size == 0:
        path.unlink(missing_ok=True)
        marker_for(path).unlink(missing_ok=True)
        return None
    return size


def _settle(path: Path, ok: bool, clear_marker: bool = True) -> bool:
    """After FFmpeg: the remuxed copy replaces the recording when it is good; the marker goes
    unless the remux was interrupted."""
    temp = temp_for(path)
    good = ok and temp.exists() and temp.stat().st_size > 0
    if good:
        os.replace(temp, path)
    else:
        temp.unlink(missing_ok=True)
    if good or clear_marker:
        marker_for(path).unlink(missing_ok=True)
    return good


async def recover(
    supervisor: ProcessSupervisor, ffmpeg: str, directory: Path, busy: set[Path]
) -> None:
    """At start: remove the frame directories of dead daemons and finish every owed remux in
    ``directory`` (each path is in ``busy`` while FFmpeg works on it)."""
    for removed in await asyncio.to_thread(clean_frame_dirs):
        log.info("removed stale frame directory %s", removed)
    for path in await asyncio.to_thread(owed_remuxes, directory):
        busy.add(path)
        try:
            if await remux(supervisor, ffmpeg, path):
                log.info("recovered recording %s (remuxed to a regular MP4)", path.name)
        finally:
            busy.discard(path)


def owed_remuxes(directory: Path) -> list[Path]:
    """Recordings in ``directory`` whose marker says a remux is owed (stale temporaries of an
    interrupted remux are removed on the way)."""
    owed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return owed
    for entry in entries:
        name = entry.name
        if not name.startswith("."):
            continue
        if name.endswith(TEMP_SUFFIX):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
        elif name.endswith(MARKER_SUFFIX):
            owed.append(directory / name[1 : -len(MARKER_SUFFIX)])
    return sorted(owed)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_frame_dirs(parent: Path | None = None, now: float | None = None) -> list[Path]:
    """Remove latest-frame directories of daemons that are gone; returns what was removed."""
    parent = Path(parent or tempfile.gettempdir())
    now = time.time() if now is None else now
    removed: list[Path] = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(FRAMES_PREFIX) or not entry.is_dir(follow_symlinks=False):
            continue
        match = _PID_DIR.match(entry.name)
        if match is not None:
            pid = int(match.group(1))
            if pid == os.getpid() or _alive(pid):
                continue
        else:
            try:
                if now - entry.stat(follow_symlinks=False).st_mtime < LEGACY_FRAMES_AGE_S:
                    continue
            except OSError:
                continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(Path(entry.path))
    return removed
