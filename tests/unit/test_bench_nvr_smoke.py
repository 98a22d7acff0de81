"""Smoke test of bench/nvr.py: it runs end to end with tiny numbers and reports sane figures
(no timing assertions: the machines are too noisy for those)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(180)
def test_nvr_bench_reports_every_figure() -> None:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg missing")
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "bench.nvr", "--seconds", "1", "--rounds", "1"),
            *("--export-minutes", "0.5", "--segment-seconds", "10", "--export-rounds", "1"),
            "--json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ours/bare" in proc.stderr
    report = json.loads(proc.stdout)
    motion, recording, export = report["motion"], report["recording"], report["export"]
    assert motion["analysis_size"] == "160x120" and motion["daemon_scoring_percent"] >= 0
    assert recording["ours_percent"] > 0 and recording["bare_percent"] > 0
    assert recording["ratio"] > 0
    assert export["export_s_median"] > 0 and export["clip_bytes"] > 0
    assert export["segments_used"] >= 3
    assert export["one_mp4_bytes"] > 0
