"""Smoke test of bench/live_first_frame.py with one trial per case: it runs end to end (real
MediaMTX, daemon, Chromium) and its JSON has the expected keys. No timing assertions.
Skipped without mediamtx on PATH or Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CASES = {"webrtc/on_demand", "webrtc/always_on", "hls/on_demand", "hls/always_on"}


@pytest.mark.skipif(
    shutil.which("mediamtx") is None or not Path("/usr/bin/chromium").exists(),
    reason="skipped: needs mediamtx on PATH and /usr/bin/chromium",
)
def test_live_first_frame_json_output() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.live_first_frame", "--trials", "1", "--json"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert set(report["cases"]) == CASES
    for figures in report["cases"].values():
        assert figures["p50_ms"] > 0 and figures["ffmpeg_p50_ms"] > 0
        assert len(figures["samples_ms"]) == 1
