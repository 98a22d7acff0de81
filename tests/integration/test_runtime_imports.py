"""The daemon runs without aiohttp (and its yarl/multidict/frozenlist/aiosignal/attrs): the
HTTP server on 8003 is h11 under our own protocol, and so is the MediaMTX API client. aiohttp
is only a test dependency (the tests' HTTP client and the fake MediaMTX's server), so what
this test process imported does not count: both checks run in their own interpreters."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from camera_service.config import deep_merge
from tests.integration.test_lazy_imports import minimal_config, probe

ROOT = Path(__file__).resolve().parents[2]
AIOHTTP_FAMILY = ("aiohttp", "yarl", "multidict", "frozenlist", "aiosignal", "attr")


def _aiohttp_family(modules: list[str] | set[str]) -> list[str]:
    return sorted(name for name in modules if name.split(".")[0] in AIOHTTP_FAMILY)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_importing_every_entry_point_leaves_out_aiohttp() -> None:
    code = (
        "import sys, camera_service.app, camera_service.cli, camera_service.client; "
        "print('\\n'.join(sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    modules = proc.stdout.split()
    assert "camera_service.transport.web" in modules
    assert _aiohttp_family(modules) == []


def test_a_daemon_with_mediamtx_and_stream_auth_runs_without_aiohttp(tmp_path: Path) -> None:
    # MediaMTX is configured (its API port closed), so the API client and the stream-auth
    # endpoint are loaded and used at start; the calls go through the dispatcher.
    mediamtx = {"enabled": True, "api_url": f"http://127.0.0.1:{_closed_port()}"}
    config = deep_merge(minimal_config(tmp_path), {"mediamtx": mediamtx})
    report = probe(tmp_path, config, "get_camera_list", "get_system_status")
    assert "camera_service.mediamtx.client" in report["modules"]
    assert "camera_service.transport.mediamtx_auth" in report["modules"]
    for answer in report["answers"]:
        assert "result" in answer, answer
    assert _aiohttp_family(report["modules"]) == []
