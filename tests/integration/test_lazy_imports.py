"""What a node does not use is not imported: a started daemon with a minimal config (one
lavfi camera, MediaMTX off, no MQTT, API keys only) has none of the lazily loaded modules in
``sys.modules``; each is imported when its feature is configured or first used, and works.

The daemon runs in its own interpreter (tests/support/module_probe.py), so what this test
process imported does not count."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from camera_service.config import deep_merge
from tests.support.daemon import base_config

ROOT = Path(__file__).resolve().parents[2]
PROBE_TIMEOUT_S = 90

# Module -> what loads it. A minimal node imports none of them at start.
LAZY_MODULES = {
    "jwt": "the first JWT issued or verified",
    "urllib.request": "PyJWT's JWKS client",
    "psutil": "the first get_metrics, get_system_status or /metrics",
    "prometheus_client": "the first /metrics scrape",
    "camera_service.metrics_export": "the first /metrics scrape",
    "camera_service.mqtt.topics": "mqtt.enabled",
    "camera_service.media.continuous": "the first continuous or motion recorder",
    "camera_service.media.motion": "the first motion recorder",
    "camera_service.media.clips": "the first clip export or recorder",
    "camera_service.rpc.methods.files": "the first file or retention method call",
    "camera_service.rpc.methods.streams": "the first streaming method call",
    "camera_service.rpc.methods.recording_modes": "the first recording-mode method call",
    "camera_service.rpc.methods.integrations": "the first get_camera_urls call",
    "camera_service.rpc.methods.controls": "the first control or settings method call",
    "camera_service.auth.stream_access": "mediamtx.stream_auth with MediaMTX on",
    "camera_service.transport.mediamtx_auth": "mediamtx.stream_auth with MediaMTX on",
}
# Also imported by these dependencies: asserted only where none of them is loaded.
ALSO_IMPORTED_BY = {"urllib.request": ("aiohttp", "prometheus_client")}


def minimal_config(tmp_path: Path) -> dict[str, Any]:
    source = {"id": "cam0", "name": "Test", "input_format": "lavfi", "input": "testsrc2"}
    return deep_merge(base_config(tmp_path), {"cameras": {"sources": [source]}})


def probe(tmp_path: Path, config: dict[str, Any], *calls: str, auth: str = "key") -> dict[str, Any]:
    tmp_path.mkdir(exist_ok=True)
    config_file = tmp_path / "probe.yaml"
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    args = [sys.executable, "-m", "tests.support.module_probe", str(config_file), "--auth", auth]
    for call in calls:
        args += ["--call", call]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def test_a_minimal_node_imports_none_of_the_lazy_modules(tmp_path: Path) -> None:
    report = probe(tmp_path, minimal_config(tmp_path))
    started = set(report["started_modules"])
    assert "camera_service.app" in started
    expected_absent = {
        name
        for name in LAZY_MODULES
        if not any(other in started for other in ALSO_IMPORTED_BY.get(name, ()))
    }
    loaded = sorted(expected_absent & started)
    assert not loaded, {name: LAZY_MODULES[name] for name in loaded}


def test_pyjwt_is_loaded_by_the_first_jwt_and_verifies_it(tmp_path: Path) -> None:
    report = probe(tmp_path, minimal_config(tmp_path), "get_camera_list", auth="jwt")
    assert "jwt" not in report["started_modules"]
    assert "jwt" in report["modules"]
    authenticated, camera_list = report["answers"]
    assert authenticated["result"]["authenticated"] is True, authenticated
    assert authenticated["result"]["role"] == "admin"
    assert authenticated["result"]["expires_at"] is not None  # the JWT's exp
    assert [c["device"] for c in camera_list["result"]["cameras"]] == ["cam0"]


# First calls of lazily registered methods: bad params, unknown cameras and good calls.
LAZY_CALLS = (
    'set_recording_mode:{"device": "cam0", "mode": "sometimes"}',
    'get_recording_mode:{"device": "cam0"}',
    'list_recordings:{"limit": 0}',
    "list_snapshots",
    'get_camera_controls:{"device": "cam0"}',
    'set_camera_settings:{"device": "cam0", "fps": "fast"}',
    "get_streams",
    'get_camera_urls:{"device": "nope"}',
)


def test_lazily_registered_methods_answer_their_first_call_as_once_loaded(
    tmp_path: Path,
) -> None:
    first = probe(tmp_path / "first", minimal_config(tmp_path / "first"), *LAZY_CALLS)
    # rpc.discover first loads every handler module: the same calls then meet loaded ones.
    loaded_config = minimal_config(tmp_path / "loaded")
    loaded = probe(tmp_path / "loaded", loaded_config, "rpc.discover", *LAZY_CALLS)
    for name in LAZY_MODULES:
        if name.startswith("camera_service.rpc.methods."):
            assert name not in first["started_modules"]
            assert name in first["modules"]

    def bare(answers: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in answer.items() if k != "id"} for answer in answers]

    assert bare(first["answers"][1:]) == bare(loaded["answers"][2:])
    assert "error" in first["answers"][1]  # the bad mode
    assert first["answers"][2]["result"]["mode"] == "off"
    assert "result" in first["answers"][4]  # list_snapshots


def test_the_recorder_loads_when_a_recording_mode_is_set(tmp_path: Path) -> None:
    report = probe(
        tmp_path,
        minimal_config(tmp_path),
        'set_recording_mode:{"device": "cam0", "mode": "continuous", "segment_seconds": 10}',
        'get_recording_mode:{"device": "cam0"}',
    )
    assert "camera_service.media.continuous" not in report["started_modules"]
    assert "camera_service.media.continuous" in report["modules"]
    _, set_mode, get_mode = report["answers"]
    assert set_mode["result"]["mode"] == "continuous", set_mode
    assert get_mode["result"]["mode"] == "continuous", get_mode


def test_psutil_loads_with_the_first_usage_report(tmp_path: Path) -> None:
    report = probe(tmp_path, minimal_config(tmp_path), "get_metrics")
    assert "psutil" not in report["started_modules"]
    assert "psutil" in report["modules"]
    _, metrics = report["answers"]
    system = metrics["result"]["system_metrics"]
    assert system["memory_usage"] > 0
    assert 0 <= system["cpu_usage"] <= 100
