"""Smoke run of bench/snapshot_latency.py (2 snapshot pairs, 1 recording cycle, daemon as a
subprocess, real FFmpeg): the JSON report has its keys and positive figures. No timing
assertions: the figures depend on the machine."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from bench import snapshot_latency
from camera_service.media.recordings import EncoderSettings, build_recording_args
from camera_service.media.source import CaptureSource

SUMMARY_KEYS = {"n", "p50_ms", "p95_ms", "p99_ms", "max_ms", "mean_ms"}
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")


def assert_summary(summary: dict[str, Any], n: int) -> None:
    assert set(summary) == SUMMARY_KEYS
    assert summary["n"] == n
    assert all(summary[key] > 0 for key in SUMMARY_KEYS - {"n"}), summary
    assert summary["p50_ms"] <= summary["p95_ms"] <= summary["max_ms"]


@needs_ffmpeg
def test_tiny_run_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    argv = ["--snapshots", "2", "--cycles", "1", "--record-seconds", "0.5", "--warmup", "0"]
    assert snapshot_latency.main([*argv, "--what-if", "--json", str(out)]) == 0
    report = json.loads(out.read_text())

    assert set(report) >= {
        "snapshots",
        "recordings",
        "ffmpeg_exec_floor",
        "what_if_first_progress",
        "rss",
        "targets",
        "verdicts",
        "config",
    }
    snapshots = report["snapshots"]
    assert_summary(snapshots["bare"], 2)
    assert_summary(snapshots["api"], 2)
    assert set(snapshots["ratio_api_bare"]) == {"p50", "p95", "paired_median"}
    assert all(value > 0 for value in snapshots["ratio_api_bare"].values())
    assert isinstance(snapshots["api_minus_bare_ms_paired_median"], float)

    recordings = report["recordings"]
    assert set(recordings) == {
        "start_recording",
        "stop_recording",
        "bare_first_progress",
        "bare_stop",
    }
    for summary in recordings.values():
        assert_summary(summary, 1)
    assert_summary(report["ffmpeg_exec_floor"], snapshot_latency.FLOOR_RUNS)
    what_if = report["what_if_first_progress"]
    assert set(what_if) == {"current", "fps_default_rounding", "no_frame_output"}
    for summary in what_if.values():
        assert_summary(summary, 1)

    rss = report["rss"]
    assert set(rss) == {"daemon_idle", "daemon_recording", "ffmpeg_recording"}
    assert all(value > 0 for entry in rss.values() for value in entry.values()), rss

    assert set(report["verdicts"]) == {
        "snapshot_ratio_p50",
        "start_recording_p95",
        "stop_recording_p95",
    }
    assert all(isinstance(value, bool) for value in report["verdicts"].values())
    config = report["config"]
    assert config["snapshots"] == 2 and config["cycles"] == 1
    assert config["daemon"].startswith("subprocess") and config["duration_s"] > 0


def test_recording_variants_change_only_the_latest_frame_output() -> None:
    source = CaptureSource("cam", "testsrc2=size=640x480:rate=15", "lavfi", exclusive=True)
    argv = build_recording_args(
        "ffmpeg",
        source,
        Path("/tmp/out.mp4"),
        "fmp4",
        None,
        EncoderSettings(),
        Path("/tmp/latest.jpg"),
        2.0,
    )
    variants = snapshot_latency.recording_variants(argv)
    assert variants["current"] == argv
    default = variants["fps_default_rounding"]
    changed = [i for i, (a, b) in enumerate(zip(argv, default, strict=True)) if a != b]
    assert len(changed) == 1 and default[changed[0]].startswith("fps=2,")
    assert variants["no_frame_output"][-1] == "/tmp/out.mp4"
    assert "/tmp/latest.jpg" not in variants["no_frame_output"]
