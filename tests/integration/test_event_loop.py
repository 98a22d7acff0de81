"""`server.event_loop`: the daemon runs (and answers) on the loop it was told to use."""

from __future__ import annotations

import importlib.util
import json
import signal
from pathlib import Path

import pytest

from camera_service.auth.api_keys import ApiKeyStore
from camera_service.auth.roles import Role
from camera_service.client import CameraClient
from camera_service.eventloop import EventLoopUnavailable, loop_factory
from tests.support.daemon import DaemonProcess, run_cli

HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None


def _started_loop(daemon: DaemonProcess) -> str:
    line = next(line for line in daemon.log_lines if "camera-service started" in line)
    return str(json.loads(line)["event_loop"])


@pytest.mark.parametrize(
    "choice",
    [
        "asyncio",
        pytest.param(
            "uvloop", marks=pytest.mark.skipif(not HAVE_UVLOOP, reason="uvloop not installed")
        ),
    ],
)
async def test_daemon_runs_and_answers_on_the_chosen_loop(tmp_path: Path, choice: str) -> None:
    daemon = DaemonProcess(tmp_path, {"server": {"event_loop": choice}})
    (tmp_path / "state").mkdir(mode=0o700)
    key, _ = ApiKeyStore(tmp_path / "state" / "api_keys.json").create("t", Role.VIEWER)
    await daemon.start()
    try:
        assert _started_loop(daemon) == choice
        async with CameraClient(daemon.ws_url) as client:
            await client.authenticate(key)
            assert await client.call("ping") == "pong"
            info = await client.call("get_server_info")
            assert info["api_version"]
        daemon.signal(signal.SIGTERM)
        assert await daemon.wait() == 0
    finally:
        await daemon.stop()


def test_auto_picks_uvloop_exactly_when_it_is_importable() -> None:
    factory, name = loop_factory("auto")
    assert name == ("uvloop" if HAVE_UVLOOP else "asyncio")
    assert (factory is not None) == HAVE_UVLOOP
    assert loop_factory("asyncio") == (None, "asyncio")


@pytest.mark.skipif(HAVE_UVLOOP, reason="uvloop is installed here")
def test_uvloop_asked_for_but_missing_is_a_clear_error() -> None:
    with pytest.raises(EventLoopUnavailable, match="uvloop is not installed"):
        loop_factory("uvloop")


def test_bad_event_loop_value_is_refused_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("server:\n  event_loop: tokio\n")
    result = run_cli("--config", str(config), "config", "check")
    assert result.returncode == 2
    assert "event_loop" in result.stderr
