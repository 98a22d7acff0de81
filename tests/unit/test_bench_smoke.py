"""Smoke test of bench/rpc_throughput.py: it runs end to end and reports sane figures.

Tiny numbers and no timing assertions: CI machines are too noisy for those. The benchmark
runs in its own interpreter (it starts its own servers and a load process).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVERS = ("bare", "ours", "jsonrpcserver")
FIGURES = ("req_per_s", "p50_ms", "p95_ms", "p99_ms", "server_us_per_call")


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    pytest.importorskip("jsonrpcserver")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.rpc_throughput",
            "--connections",
            "2",
            "--calls",
            "20",
            "--rounds",
            "1",
            "--micro-iterations",
            "50",
            "--json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ours/bare" in proc.stderr  # the human table goes to stderr with --json
    parsed: dict[str, Any] = json.loads(proc.stdout)
    return parsed


def test_report_has_every_server_with_positive_figures(report: dict[str, Any]) -> None:
    assert set(report["servers"]) == set(SERVERS)
    for name in SERVERS:
        figures = report["servers"][name]
        for key in FIGURES:
            assert figures[key] > 0, (name, key, figures)
        assert figures["errors"] == 0
        assert len(figures["rounds"]) == 1
        assert figures["rounds"][0]["calls"] == 2 * 20


def test_report_has_ratios_targets_and_config(report: dict[str, Any]) -> None:
    assert set(report["ratios"]) == {"ours/bare", "jsonrpcserver/bare"}
    assert all(value > 0 for value in report["ratios"].values())
    assert all(value > 0 for value in report["cpu_ratios"].values())
    assert {"ratio_min", "p99_max_ms", "ratio_met", "p99_met"} <= set(report["target"])
    assert all(value > 0 for value in report["micro_us"].values())
    config = report["config"]
    assert (config["connections"], config["calls_per_connection"], config["rounds"]) == (2, 20, 1)
    assert config["rate_limit"]["enabled"] is True
