"""Smoke tests of bench/connections.py and bench/versions.py: they run end to end on tiny
numbers and report sane figures (no timing assertions: CI machines are too noisy)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bench(*args: str, timeout: float = 180) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", *args, "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def test_connections_bench_holds_every_connection_and_reports_memory_per_connection() -> None:
    # a 1 s idle-CPU window instead of 5 s (three of them: 15 of the test's 19 s)
    report = _bench("bench.connections", "--steps", "20,60", "--pings", "10", "--idle-window", "1")
    steps = report["steps"]
    assert [row["connections"] for row in steps] == [20, 60]
    for row in steps:
        assert row["lost"] == 0
        assert row["rss_mb"] >= report["base_rss_mb"] * 0.9
        assert 0 < row["ping_p50_ms"] <= row["ping_p99_ms"]
    assert report["base_rss_mb"] > 10


def test_versions_bench_compares_two_daemons_with_the_same_jobs() -> None:
    report = _bench("bench.versions", "--baseline", "HEAD", "--rounds", "1", "--calls", "10")
    for job in ("ping", "get_camera_list"):
        for side in ("baseline", "current"):
            figures = report["medians"][job][side]
            assert figures["req_per_s"] > 0
            assert figures["server_us_per_call"] >= 0
        assert report["ratios_current_over_baseline"][job]["req_per_s"] > 0


def test_idle_bench_reports_cpu_memory_and_the_import_profile() -> None:
    report = _bench("bench.idle", "--window", "1")
    idle = report["idle"]
    assert idle["window_s"] == 1
    assert 0 <= idle["cpu_percent"] < 100
    assert idle["rss_mb"] > idle["uss_mb"] > 5
    assert idle["event_loop"] in ("asyncio", "uvloop")
    assert idle["mediamtx"] is False
    assert report["target_rss_mb"] == 47
    assert report["rss_target_met"] == (idle["rss_mb"] < 47)
    modules = [row["module"] for row in report["imports"]["top_cumulative_ms"]]
    assert "camera_service.app" in modules


@pytest.mark.skipif(shutil.which("mediamtx") is None, reason="skipped: mediamtx not on PATH")
def test_idle_bench_runs_beside_a_real_mediamtx_with_stream_auth() -> None:
    report = _bench("bench.idle", "--window", "1", "--mediamtx")
    idle = report["idle"]
    assert idle["mediamtx"] is True
    assert idle["rss_mb"] > idle["uss_mb"] > 5
