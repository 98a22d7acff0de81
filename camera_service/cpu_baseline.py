"""CPU-time baselines taken at start without psutil.

psutil (~0.9 MB of RSS) is imported by the first call that reports usage (get_metrics,
get_system_status, the RSS gauge of /metrics), not at start. Its ``cpu_percent(None)`` only
measures from a previous call, so the daemon used to prime it at start; these baselines keep
that: the first percentage covers the time since start, computed as psutil computes it, and
psutil is primed at the same moment for every later call."""

from __future__ import annotations

import os
import time

PROC_STAT = "/proc/stat"


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


class ProcessCpuBaseline:
    """``psutil.Process.cpu_percent``'s figure (percent of one core) since construction."""

    def __init__(self) -> None:
        self._wall = time.monotonic()
        self._cpu = _own_cpu_seconds()

    def percent(self) -> float:
        elapsed = time.monotonic() - self._wall
        if elapsed <= 0:
            return 0.0
        return round((_own_cpu_seconds() - self._cpu) / elapsed * 100, 1)


def _host_ticks(path: str) -> list[int]:
    """The aggregate ``cpu`` line of /proc/stat: user nice system idle iowait irq softirq
    steal guest guest_nice (as many as the kernel has), in clock ticks."""
    with open(path, encoding="ascii") as stat:
        fields = stat.readline().split()
    return [int(value) for value in fields[1:]]


class HostCpuBaseline:
    """``psutil.cpu_percent``'s host-wide figure since construction (None without /proc)."""

    def __init__(self, path: str = PROC_STAT) -> None:
        self._path = path
        try:
            self._ticks: list[int] | None = _host_ticks(path)
        except (OSError, ValueError):
            self._ticks = None

    def percent(self) -> float | None:
        if self._ticks is None:
            return None
        try:
            now = _host_ticks(self._path)
        except (OSError, ValueError):
            return None
        deltas = [max(0, b - a) for a, b in zip(self._ticks, now, strict=False)]
        # psutil: guest times are already in user/nice; idle and iowait are not busy.
        total = sum(deltas) - sum(deltas[8:10])
        busy = total - sum(deltas[3:5])
        if total <= 0:
            return 0.0
        return round(busy / total * 100, 1)
