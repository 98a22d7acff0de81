"""Disk usage of the storage directories and the low-space write guard.

Percentages are of the file system that holds the checked directory (``recordings_dir`` for
:func:`storage_info`). The disk-usage probe is injectable (``disk_usage=``) so tests can
simulate a full disk. All file-system work runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple, TypedDict

from camera_service.storage.errors import StorageError


class DiskUsage(NamedTuple):
    total: int
    used: int
    free: int


DiskUsageFn = Callable[[Path], DiskUsage]


def system_disk_usage(path: Path) -> DiskUsage:
    """``shutil.disk_usage`` of ``path`` (or its nearest existing parent)."""
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    total, used, free = shutil.disk_usage(probe)
    return DiskUsage(total, used, free)


class InsufficientStorage(StorageError):
    """Free space is under the blocking threshold."""

    def __init__(self, available_bytes: int, threshold_bytes: int) -> None:
        super().__init__(
            f"insufficient storage: {available_bytes} bytes free, "
            f"at least {threshold_bytes} bytes required"
        )
        self.available_bytes = available_bytes
        self.threshold_bytes = threshold_bytes


class StorageInfo(TypedDict):
    total_space: int
    used_space: int
    available_space: int
    usage_percentage: float
    recordings_size: int
    snapshots_size: int
    low_space_warning: bool
    critical: bool


def directory_size(directory: Path) -> int:
    """Total size in bytes of the regular files under ``directory`` (no symlinks followed)."""
    total = 0
    for root, _dirs, files in os.walk(directory):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total


def usage_percent(usage: DiskUsage) -> float:
    """Used share of the file system, in percent (two decimals)."""
    return round(usage.used / usage.total * 100.0, 2) if usage.total > 0 else 100.0


def block_threshold_bytes(usage: DiskUsage, block_percent: float) -> int:
    """Free bytes under which writes are refused."""
    return int(usage.total * (100.0 - block_percent) / 100.0)


def _check(usage: DiskUsage, block_percent: float) -> None:
    if usage_percent(usage) >= block_percent:
        raise InsufficientStorage(usage.free, block_threshold_bytes(usage, block_percent))


def _storage_info(
    recordings_dir: Path,
    snapshots_dir: Path,
    warn_percent: float,
    block_percent: float,
    disk_usage: DiskUsageFn,
) -> StorageInfo:
    usage = disk_usage(recordings_dir)
    percent = usage_percent(usage)
    return {
        "total_space": usage.total,
        "used_space": usage.used,
        "available_space": usage.free,
        "usage_percentage": percent,
        "recordings_size": directory_size(recordings_dir),
        "snapshots_size": directory_size(snapshots_dir),
        "low_space_warning": percent >= warn_percent,
        "critical": percent >= block_percent,
    }


async def storage_info(
    recordings_dir: Path,
    snapshots_dir: Path,
    warn_percent: float,
    block_percent: float,
    disk_usage: DiskUsageFn = system_disk_usage,
) -> StorageInfo:
    """The ``get_storage_info`` result."""
    return await asyncio.to_thread(
        _storage_info,
        Path(recordings_dir),
        Path(snapshots_dir),
        warn_percent,
        block_percent,
        disk_usage,
    )


async def check_can_write(
    directory: Path,
    block_percent: float,
    disk_usage: DiskUsageFn = system_disk_usage,
) -> DiskUsage:
    """Raise :class:`InsufficientStorage` when usage of ``directory``'s file system is at or
    over ``block_percent``; otherwise return the measured usage."""
    usage = await asyncio.to_thread(disk_usage, Path(directory))
    _check(usage, block_percent)
    return usage
