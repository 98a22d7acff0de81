"""Smoke run of bench/capture_cpu.py (tiny source, 1 s windows, daemons as subprocesses, real
FFmpeg): the report has its figures and the copy run really copied. No timing assertions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench import capture_cpu


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_tiny_run_reports_both_modes(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    assert capture_cpu.main(["--seconds", "1", "--size", "320x240", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["copy"]["copy_in_argv"] is True
    assert report["encode"]["copy_in_argv"] is False
    assert report["mjpeg"]["mode"] == "mjpeg-640x480" and not report["mjpeg"]["copy_in_argv"]
    for mode in ("copy", "encode", "mjpeg"):
        figures = report[mode]
        assert figures["ffmpeg_children"] == 1
        assert figures["total_percent"] > 0 and figures["file_size"] > 0
        assert figures["snapshot_p50_ms"] > 0
    assert report["ratio_copy_encode"] > 0
    assert set(report["targets"]) == {
        "copy_percent_max",
        "copy_ratio_max",
        "copy_percent_ok",
        "copy_ratio_ok",
    }
