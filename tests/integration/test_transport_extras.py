"""TLS, keepalive, log redaction, origin reload, and the token CLI."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import subprocess
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus

from camera_service.auth.roles import Role
from camera_service.client import CameraClient, RpcCallError
from camera_service.logging import JsonFormatter, redact
from tests.support.daemon import DaemonProcess, RunningDaemon, running_daemon


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


async def test_wss_when_certificate_configured(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    overrides = {"server": {"tls": {"cert_file": str(cert), "key_file": str(key)}}}
    async with running_daemon(tmp_path, overrides) as daemon:
        context = ssl.create_default_context(cafile=str(cert))
        url = daemon.ws_url.replace("ws://", "wss://")
        async with connect(url, ssl=context) as ws:
            await ws.send('{"jsonrpc":"2.0","method":"ping","id":1}')
            assert json.loads(await ws.recv())["result"] == "pong"
        with pytest.raises((ConnectionClosed, OSError, InvalidMessage, InvalidStatus)):
            async with asyncio.timeout(5), connect(daemon.ws_url) as plain:
                await plain.send('{"jsonrpc":"2.0","method":"ping","id":1}')
                await plain.recv()


async def test_peer_that_stops_answering_pings_is_closed(tmp_path: Path) -> None:
    overrides = {"server": {"ping_interval": 0.2, "ping_timeout": 0.2, "close_timeout": 0.5}}
    async with running_daemon(tmp_path, overrides) as daemon:
        closed = asyncio.Event()
        daemon.app.ws._on_session_close = lambda session: closed.set()
        ws = await connect(daemon.ws_url)
        try:
            ws.transport.pause_reading()  # a frozen peer: never reads the server's pings
            await asyncio.wait_for(closed.wait(), 5)
        finally:
            ws.transport.abort()
        assert daemon.app.metrics.open_connections == 0


def test_redaction_of_tokens_keys_and_query_strings() -> None:
    jwt_like = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    text = f"auth {jwt_like} key csk_ab12cd34_secretpart GET /files/x.jpg?token=123.abc&x=1"
    cleaned = redact(text)
    assert jwt_like not in cleaned and "secretpart" not in cleaned and "123.abc" not in cleaned
    assert "x=1" in cleaned


async def test_failed_and_successful_auth_are_audited_without_secrets(
    daemon: RunningDaemon, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    token = daemon.token(Role.ADMIN)
    async with CameraClient(daemon.ws_url) as client:
        with pytest.raises(RpcCallError):
            await client.authenticate(token + "tampered")
        await client.authenticate(token)
        await client.call("get_status")
    formatter = JsonFormatter()
    lines = [formatter.format(r) for r in caplog.records if r.name == "camera_service.audit"]
    assert any("authentication failed" in line for line in lines)
    assert any("authentication succeeded" in line and '"who": "tester"' in line for line in lines)
    assert any('"method": "get_status"' in line and '"result": "ok"' in line for line in lines)
    assert not any(token[:40] in line for line in lines)


async def test_sighup_applies_new_allowed_origins(tmp_path: Path) -> None:
    import yaml

    from tests.support.daemon import base_config

    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(base_config(tmp_path)))
    async with running_daemon(tmp_path) as daemon:
        daemon.app.config_path = config_file
        data = base_config(tmp_path)
        data["server"]["allowed_origins"] = ["https://ops.example"]
        config_file.write_text(yaml.safe_dump(data))
        report = daemon.app.reload()
        assert "server.allowed_origins" in report.applied
        with pytest.raises(InvalidStatus) as info:
            await connect(daemon.ws_url, origin="https://evil.example")  # type: ignore[arg-type]
        assert info.value.response.status_code == 403


async def test_token_cli_issues_a_working_jwt(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path)
    issued = daemon.cli("token", "--role", "operator", "--user", "alice", "--ttl", "2h")
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip()
    assert token.count(".") == 2
    bad = daemon.cli("token", "--role", "root", "--user", "x")
    assert bad.returncode == 2 and "unknown role" in bad.stderr
    await daemon.start()
    try:
        async with CameraClient(daemon.ws_url) as client:
            result = await client.authenticate(token)
            assert result["role"] == "operator" and result["expires_at"]
    finally:
        daemon.signal(__import__("signal").SIGTERM)
        assert await daemon.wait() == 0
