"""Smoke run of bench/integrations.py (tiny counts; daemon subprocess, real FFmpeg, two real
Mosquitto brokers): the JSON report has every figure. No timing assertions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench import integrations
from tests.support.mosquitto import MOSQUITTO

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg"),
    pytest.mark.skipif(not Path(MOSQUITTO).exists(), reason="needs mosquitto"),
]


def test_tiny_run_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    argv = ["--warm", "3", "--cold", "1", "--viewers", "2", "--seconds", "0.5", "--changes", "2"]
    assert integrations.main([*argv, "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["snapshot"]["warm"]["n"] == 3 and report["snapshot"]["cold"]["n"] == 1
    assert report["snapshot"]["warm"]["p50_ms"] > 0
    assert report["mjpeg"]["many"]["viewers"] == 2
    assert report["mjpeg"]["many"]["ffmpeg_readers"] == 1  # two viewers, one reader
    assert report["mjpeg"]["one"]["fps_mean"] > 0
    assert report["mqtt"]["central"]["n"] == 4 and report["mqtt"]["edge"]["p99_ms"] > 0
