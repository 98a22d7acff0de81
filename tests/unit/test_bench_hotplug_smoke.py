"""Smoke test of bench/hotplug_fanout.py with tiny numbers: it runs end to end (daemon in the
parent, clients in a child process) and its JSON has the expected keys. No timing assertions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
STAGES = {
    "all_clients",
    "all_arrived",
    "median_client",
    "first_client",
    "detect",
    "fanout",
    "server_cpu",
    "client_cpu",
}


def test_hotplug_fanout_json_output() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.hotplug_fanout", "--clients", "5", "--events", "3", "--json"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["clients"] == 5 and report["events"] == 3
    for key in ("p50_ms", "p99_ms", "max_ms"):
        assert report[key] > 0, key
    assert report["p50_ms"] <= report["p99_ms"] <= report["max_ms"]
    for action in ("plug", "unplug"):
        assert set(report[action]) == STAGES
        for stage in ("all_clients", "detect", "fanout"):
            assert report[action][stage]["p99_ms"] > 0, (action, stage)
    assert report["mismatched_notes"] == 0
    assert report["target"]["p99_max_ms"] == 50.0
    assert isinstance(report["target"]["met"], bool)
    assert report["config"]["client_procs"] == 1
    assert "target p99 < 50 ms" in proc.stderr  # the human-readable table goes to stderr
