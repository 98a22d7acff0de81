"""Smoke test of bench/stream_auth.py: the auth-call part runs end to end with tiny numbers
(no timing assertions; CI machines are too noisy). The first-frame part needs the real
MediaMTX and is left out here (``--rounds 0``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_stream_auth_bench_reports_every_kind(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.stream_auth", "--calls", "3", "--blocks", "1",
         "--rounds", "0", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    auth = report["auth_call"]
    assert set(auth["latency_ms"]) == {
        "bare", "jwt", "api_key", "stream_token", "publisher", "anonymous",
    }  # fmt: skip
    assert auth["calls_per_kind"] == 3
    assert all(v["p50_ms"] > 0 for v in auth["handler_ms"].values())
    assert auth["pure_decision_us"] > 0
    assert "first frame" in proc.stdout
