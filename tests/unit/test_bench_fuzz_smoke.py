"""Smoke run of bench/fuzz.py (600 frames, real daemon subprocess): no crash, no -32603,
and the report has its figures. No timing assertions."""

from __future__ import annotations

import json
from pathlib import Path

from bench import fuzz


def test_small_fuzz_run_is_clean(tmp_path: Path) -> None:
    out = tmp_path / "fuzz.json"
    assert fuzz.main(["--frames", "600", "--connections", "2", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["frames"] == 600
    assert report["internal_errors"] == 0 and not report["crashed"]
    assert report["daemon_alive"] and report["daemon_answers_after"]
    assert report["answers"] > 0 and report["rss_mib"]["before"] > 0
    assert {"surrogate", "number", "batch", "nesting"} <= set(report["categories"])
