"""Smoke test of bench/mediamtx_client.py on tiny numbers against the fake MediaMTX: both
clients make their calls, the JSON has its keys, and the client module loads without aiohttp
(no timing assertions)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_mediamtx_client_bench_json_output() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.mediamtx_client", "--server", "fake", "--calls", "20",
         "--blocks", "2", "--paths", "3", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["server"] == "fake"
    assert report["paths_listed"] == 3
    for name in ("h11", "aiohttp"):
        figures = report["clients"][name]
        assert figures["calls"] == 20
        assert 0 < figures["p50_ms"] <= figures["p99_ms"]
        assert figures["cpu_us_per_call"] > 0
    assert set(report["h11_over_aiohttp"]) == {"p50_ms", "p99_ms", "mean_ms", "cpu_us_per_call"}
    rss = report["import_rss"]
    assert rss["client_module"]["aiohttp_loaded"] is False
    assert rss["client_module_plus_aiohttp"]["aiohttp_loaded"] is True
