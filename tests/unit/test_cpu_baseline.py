"""psutil is imported at the first usage report; the CPU baselines taken at start without it
give the figures psutil's primed cpu_percent(None) gave over the same interval."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil

from camera_service.cpu_baseline import HostCpuBaseline, ProcessCpuBaseline
from camera_service.metrics import Metrics
from camera_service.status import HostUsage

BURN_CPU_S = 0.3
TOLERANCE = 10.0  # percentage points: the two readings are microseconds apart


def _burn(cpu_seconds: float = BURN_CPU_S, deadline_s: float = 20.0) -> None:
    """Spend CPU time in this process (bounded by a wall-clock deadline)."""
    start, deadline = sum(os.times()[:2]), time.monotonic() + deadline_s
    while sum(os.times()[:2]) - start < cpu_seconds and time.monotonic() < deadline:
        sum(range(10_000))


def test_the_process_baseline_reads_as_psutils_primed_process_cpu_percent() -> None:
    proc = psutil.Process()
    proc.cpu_percent(None)
    baseline = ProcessCpuBaseline()
    _burn()
    ours, theirs = baseline.percent(), proc.cpu_percent(None)
    assert theirs > 0
    assert abs(ours - theirs) <= TOLERANCE, (ours, theirs)


def test_the_host_baseline_reads_as_psutils_primed_cpu_percent() -> None:
    psutil.cpu_percent(None)
    baseline = HostCpuBaseline()
    _burn()
    ours, theirs = baseline.percent(), psutil.cpu_percent(None)
    assert ours is not None and theirs > 0
    assert abs(ours - theirs) <= TOLERANCE, (ours, theirs)


def test_without_proc_stat_the_host_baseline_gives_way_to_psutil(tmp_path: Path) -> None:
    assert HostCpuBaseline(str(tmp_path / "missing")).percent() is None


def test_the_first_usage_readings_cover_the_time_since_start(tmp_path: Path) -> None:
    metrics, host = Metrics(), HostUsage(tmp_path)
    _burn()
    # psutil's own first reading would only start its measurement (0.0).
    assert metrics.system()["cpu_percent"] > 0
    assert host()["cpu_usage"] > 0
    _burn()
    assert metrics.system()["cpu_percent"] > 0  # since the previous call, from psutil
