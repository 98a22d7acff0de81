"""Storage faults: what a failed write means, and the ``storage`` / ``ffmpeg`` health probes.

A write that fails with ``ENOSPC``/``EDQUOT`` is a full disk (the API answers -32060); one that
fails with ``EROFS``, ``EACCES``/``EPERM`` or ``EIO`` means the storage cannot be written at all
(-32050, dependency ``storage``). :func:`classify` maps an :class:`OSError` onto those two; the
probes here report the same conditions to ``get_status`` and ``/health`` before anyone writes.
Every check is one or two system calls (``statvfs``, ``access``), cheap enough for each probe.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from camera_service.health import ComponentStatus
from camera_service.storage.usage import DiskUsageFn, block_threshold_bytes, usage_percent
from camera_service.storage.usage import system_disk_usage as default_disk_usage

FaultKind = Literal["no_space", "unwritable"]

_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
_UNWRITABLE = frozenset({errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO})
_REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EIO: "input/output error",
}


@dataclass(frozen=True, slots=True)
class StorageFault:
    kind: FaultKind
    reason: str  # a short phrase without any path


def classify(exc: BaseException) -> StorageFault | None:
    """The storage fault behind ``exc`` (an OSError of a write), None for anything else."""
    if not isinstance(exc, OSError) or exc.errno is None:
        return None
    if exc.errno in _NO_SPACE:
        return StorageFault("no_space", _REASONS[exc.errno])
    if exc.errno in _UNWRITABLE:
        return StorageFault("unwritable", _REASONS[exc.errno])
    return None


def writable_problem(directory: Path) -> str | None:
    """Why ``directory`` cannot take new files (None when it can)."""
    probe = directory
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    try:
        flags = os.statvfs(probe).f_flag
    except OSError as exc:
        return f"cannot inspect: {exc.strerror or exc}"
    if flags & os.ST_RDONLY:
        return "the file system is read-only"
    if not os.access(probe, os.W_OK | os.X_OK):
        return "not writable by the daemon"
    return None


class StorageHealth:
    """The ``storage`` component: unhealthy when a directory cannot be written (nothing can be
    stored), degraded when the disk is at the warning or the blocking threshold (new files are
    refused there, but with ``storage.when_full: delete_oldest`` a full disk is routine)."""

    def __init__(
        self,
        directories: Mapping[str, Path],
        warn_percent: float,
        block_percent: float,
        disk_usage: DiskUsageFn = default_disk_usage,
    ) -> None:
        self.directories = dict(directories)
        self.warn_percent = warn_percent
        self.block_percent = block_percent
        self.disk_usage = disk_usage

    def probe(self) -> ComponentStatus:
        problems = {
            name: problem
            for name, directory in self.directories.items()
            if (problem := writable_problem(directory)) is not None
        }
        details: dict[str, object] = {}
        if problems:
            details["unwritable"] = problems
        try:
            usage = self.disk_usage(self.directories["recordings"])
        except (OSError, KeyError) as exc:
            return ComponentStatus("unhealthy", {**details, "reason": f"disk usage: {exc}"})
        percent = usage_percent(usage)
        details.update(usage_percent=percent, available_bytes=usage.free)
        if problems:
            first = next(iter(problems.items()))
            reason = f"{first[0]} directory: {first[1]}"
            return ComponentStatus("unhealthy", {**details, "reason": reason})
        if percent >= self.block_percent:
            threshold = block_threshold_bytes(usage, self.block_percent)
            reason = f"disk {percent}% full: {usage.free} bytes free, {threshold} needed"
            return ComponentStatus("degraded", {**details, "reason": reason, "critical": True})
        if percent >= self.warn_percent:
            reason = f"disk {percent}% full (warning at {self.warn_percent}%)"
            return ComponentStatus("degraded", {**details, "reason": reason})
        return ComponentStatus("healthy", details)


class FfmpegHealth:
    """The ``ffmpeg`` component: unhealthy without ffmpeg (no snapshots, no recordings),
    degraded without ffprobe (no media details)."""

    def __init__(
        self, ffmpeg: str, ffprobe: str, which: Callable[[str], str | None] = shutil.which
    ) -> None:
        self.ffmpeg = ffmpeg
        self.ffprobe = ffprobe
        self.which = which

    def probe(self) -> ComponentStatus:
        found = {"ffmpeg": self.which(self.ffmpeg), "ffprobe": self.which(self.ffprobe)}
        details = {name: path is not None for name, path in found.items()}
        if found["ffmpeg"] is None:
            reason = f"ffmpeg executable {Path(self.ffmpeg).name!r} not found"
            return ComponentStatus("unhealthy", {**details, "reason": reason})
        if found["ffprobe"] is None:
            reason = f"ffprobe executable {Path(self.ffprobe).name!r} not found"
            return ComponentStatus("degraded", {**details, "reason": reason})
        return ComponentStatus("healthy", details)
