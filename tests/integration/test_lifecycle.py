"""Process lifecycle: graceful SIGTERM, start-up failures, configuration errors, SIGHUP."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import time
from pathlib import Path

import psutil
import pytest
import yaml
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from camera_service.client import CameraClient
from tests.support.daemon import DaemonProcess, base_config, make_config, run_cli
from tests.support.media import ffmpeg_children
from tests.support.waiting import wait_until


async def test_sigterm_with_open_clients_exits_0_and_closes_with_1001(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path)
    daemon.cli("keys", "create", "--role", "viewer", "--name", "t", "--json")
    key = json.loads(
        daemon.cli("keys", "create", "--role", "viewer", "--name", "t2", "--json").stdout
    )["key"]
    await daemon.start()
    clients = [CameraClient(daemon.ws_url) for _ in range(5)]
    try:
        for client in clients:
            await client.connect()
            await client.authenticate(key)
            await client.call("subscribe_events", {"topics": ["system.*"]})
        started = time.monotonic()
        daemon.signal(signal.SIGTERM)
        assert await daemon.wait(timeout=12) == 0
        assert time.monotonic() - started < 10
        for client in clients:
            note = await client.next_notification(timeout=5)
            assert note["params"]["topic"] == "system.shutdown"
            await client.connection.wait_closed()
            assert client.connection.close_code == 1001
    finally:
        await daemon.stop()
        for client in clients:
            await client.close()
    assert not any("Traceback" in line for line in daemon.log_lines)


async def test_sigint_also_stops_cleanly(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path)
    await daemon.start()
    try:
        daemon.signal(signal.SIGINT)
        assert await daemon.wait() == 0
    finally:
        await daemon.stop()


async def test_in_flight_call_finishes_before_exit(tmp_path: Path) -> None:
    source = {"id": "lab0", "input_format": "lavfi", "input": "testsrc2=size=320x240:rate=15"}
    daemon = DaemonProcess(tmp_path, {"cameras": {"sources": [source]}})
    key = json.loads(
        daemon.cli("keys", "create", "--role", "operator", "--name", "k", "--json").stdout
    )
    await daemon.start()
    try:
        async with connect(daemon.ws_url) as ws:
            await ws.send(
                json.dumps(
                    {
                        "jsonrpc": "2.0",
                        "method": "take_snapshot",
                        "id": 1,
                        "params": {"device": "lab0", "auth_token": key["key"]},
                    }
                )
            )
            # The call is in flight once its FFmpeg capture runs; only then comes SIGTERM.
            daemon_process = psutil.Process(daemon.proc.pid)  # type: ignore[union-attr]
            await wait_until(
                lambda: bool(ffmpeg_children(daemon_process)),
                what="snapshot capture started",
            )
            daemon.signal(signal.SIGTERM)
            try:
                answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
            except ConnectionClosed as closed:
                pytest.fail(f"closed before answering the in-flight call: {closed}")
            assert answer.get("result", {}).get("status") == "SUCCESS", answer
        assert await daemon.wait() == 0
    finally:
        await daemon.stop()
    assert (tmp_path / "snapshots" / answer["result"]["filename"]).stat().st_size > 0


async def test_port_in_use_is_one_clear_line_and_nonzero_exit(tmp_path: Path) -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    try:
        daemon = DaemonProcess(tmp_path, {"server": {"port": port}})
        result = await asyncio.to_thread(daemon.cli, "run")
    finally:
        blocker.close()
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    error_lines = [line for line in output.splitlines() if '"ERROR"' in line]
    assert len(error_lines) == 1
    assert f"cannot listen for WebSocket on 127.0.0.1:{port}" in error_lines[0]
    assert "in use" in error_lines[0]


@pytest.mark.parametrize(
    ("yaml_text", "fragment"),
    [
        ("server:\n  prot: 8002\n", "server.prot: unknown key"),
        ("server:\n  port: 70000\n", "server.port: Input should be less than or equal to 65535"),
        ("bogus: {}\n", "bogus: unknown key"),
        ("cameras:\n  discovery: magic\n", "cameras.discovery"),
        ("storage:\n  warn_percent: 90\n  block_percent: 50\n", "block_percent must be >= warn"),
        ("server: [unclosed\n", "not valid YAML"),
        ("- a\n- b\n", "mapping of sections"),
    ],
)
def test_bad_config_exits_2_naming_the_key(tmp_path: Path, yaml_text: str, fragment: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(yaml_text)
    result = run_cli("--config", str(config), "run")
    assert result.returncode == 2
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr


def test_unreadable_config_exits_nonzero_without_traceback(tmp_path: Path) -> None:
    result = run_cli("--config", str(tmp_path / "missing.yaml"), "config", "check")
    assert result.returncode == 2
    assert "cannot read config file" in result.stderr
    assert "Traceback" not in result.stderr


def test_env_overrides_and_unknown_env_key(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("server:\n  port: 9000\n")
    env = {
        "CAMERA_SERVICE__SERVER__PORT": "9100",
        "CAMERA_SERVICE__SERVER__RATE_LIMIT__ENABLED": "false",
        "CAMERA_SERVICE__CAMERAS__SOURCES": '[{"id": "test0", "input": "testsrc2", "input_format": "lavfi"}]',
        "CAMERA_SERVICE__AUTH__JWT_SECRET": "s" * 40,
    }
    result = run_cli("--config", str(config), "config", "check", env=env)
    assert result.returncode == 0, result.stderr
    effective = json.loads(result.stdout)["config"]
    assert effective["server"]["port"] == 9100
    assert effective["server"]["rate_limit"]["enabled"] is False
    assert effective["cameras"]["sources"][0]["id"] == "test0"
    assert "s" * 40 not in result.stdout
    bad = run_cli(
        "--config", str(config), "config", "check", env={"CAMERA_SERVICE__SERVER__NOPE": "1"}
    )
    assert bad.returncode == 2
    assert "server.nope: unknown key" in bad.stderr


def test_config_schema_is_json_schema_with_descriptions() -> None:
    result = run_cli("config", "schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    server = schema["$defs"]["ServerConfig"]["properties"]
    assert server["port"]["default"] == 8002
    assert server["max_connections"]["description"]


async def test_sighup_reload_is_reported_in_the_log(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path, {"logging": {"level": "INFO"}})
    await daemon.start()
    try:
        data = base_config(tmp_path)
        data["logging"]["level"] = "DEBUG"
        data["server"]["max_batch"] = 7
        daemon.config_file.write_text(yaml.safe_dump(data))
        daemon.signal(signal.SIGHUP)
        report = json.loads(await daemon.wait_for_log("configuration reloaded"))
        assert "logging.level" in report["applied"]
        assert "auth.api_keys" in report["applied"]
        assert report["needs_restart"] == ["server.max_batch"]
    finally:
        daemon.signal(signal.SIGTERM)
        assert await daemon.wait() == 0


async def test_reload_applies_log_level_and_revoked_keys(tmp_path: Path) -> None:
    from camera_service.app import Application
    from camera_service.auth.api_keys import ApiKeyStore
    from camera_service.auth.roles import Role

    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(base_config(tmp_path)))
    app = Application(make_config(tmp_path), config_file)
    key, record = app.keys.create("k", Role.VIEWER)
    assert app.keys.verify(key).role is Role.VIEWER
    ApiKeyStore(app.config.api_keys_file).revoke(record.id)
    data = base_config(tmp_path)
    data["logging"]["level"] = "DEBUG"
    config_file.write_text(yaml.safe_dump(data))
    before = logging.getLogger().level
    try:
        report = app.reload()
        assert logging.getLogger().level == logging.DEBUG
        assert "logging.level" in report.applied
        assert not app.keys.is_active(record.id)
    finally:
        logging.getLogger().setLevel(before)
