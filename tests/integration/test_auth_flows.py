"""Authentication flows: results, session expiry, revocation on open connections, limits."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from camera_service.auth.roles import Role
from camera_service.client import CameraClient, RpcCallError
from tests.support.daemon import DaemonProcess, RunningDaemon


async def test_authenticate_result_for_api_key_and_jwt(daemon: RunningDaemon) -> None:
    async with CameraClient(daemon.ws_url) as client:
        result = await client.authenticate(daemon.keys["operator"])
        assert result["authenticated"] is True
        assert result["role"] == "operator"
        assert result["expires_at"] is None
        assert result["permissions"] == ["view", "control"]
        assert len(result["session_id"]) == 32
        jwt_result = await client.authenticate(daemon.token(Role.ADMIN, ttl=600))
        assert jwt_result["role"] == "admin"
        assert jwt_result["expires_at"].endswith("+00:00")
        assert jwt_result["session_id"] == result["session_id"]


async def test_bad_credentials_are_32001_with_reason(daemon: RunningDaemon) -> None:
    async with CameraClient(daemon.ws_url) as client:
        for token, reason in [
            ("garbage", "invalid token"),
            ("csk_deadbeef_nope", "invalid API key"),
        ]:
            with pytest.raises(RpcCallError) as info:
                await client.authenticate(token)
            assert info.value.code == -32001
            assert info.value.data == {"reason": reason}


async def test_expired_session_fails_next_call_with_token_expired(
    daemon: RunningDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with CameraClient(daemon.ws_url) as client:
        await client.authenticate(daemon.token(Role.VIEWER, ttl=30))
        assert (await client.call("get_server_info"))["name"] == "camera-service"
        later = time.time() + 31
        monkeypatch.setattr(daemon.app.authenticator, "_clock", lambda: later)
        with pytest.raises(RpcCallError) as info:
            await client.call("get_server_info")
        assert info.value.code == -32001
        assert info.value.data == {"reason": "token expired"}


async def test_failed_auth_is_limited_per_address(daemon: RunningDaemon) -> None:
    async with CameraClient(daemon.ws_url) as client:
        for _ in range(5):
            with pytest.raises(RpcCallError) as info:
                await client.authenticate("wrong")
            assert info.value.code == -32001
    async with CameraClient(daemon.ws_url) as other:
        with pytest.raises(RpcCallError) as info:
            await other.authenticate(daemon.keys["admin"])
        assert info.value.code == -32040
        assert info.value.data["retry_after_ms"] > 0


async def test_per_call_auth_token_works_without_authenticate(daemon: RunningDaemon) -> None:
    async with CameraClient(daemon.ws_url) as client:
        info = await client.call("get_server_info", {"auth_token": daemon.keys["viewer"]})
        assert info["api_version"] == "1.1"
        with pytest.raises(RpcCallError) as denied:
            await client.call("get_status", {"auth_token": daemon.keys["viewer"]})
        assert denied.value.code == -32002


async def test_notifications_only_reach_authenticated_connections(daemon: RunningDaemon) -> None:
    from camera_service.events import Event

    async with CameraClient(daemon.ws_url) as anonymous, daemon.client("viewer") as viewer:
        await viewer.call("subscribe_events", {"topics": ["system.*"]})
        daemon.app.bus.publish(Event("system.health", "system_status_update", {"status": "x"}))
        note = await viewer.next_notification()
        assert note["method"] == "system_status_update"
        assert note["params"]["topic"] == "system.health"
        # The connection keeps its order: after a ping's answer, anything sent before it
        # has arrived.
        assert await anonymous.call("ping") == "pong"
        assert anonymous.pending_notifications() == 0


async def test_cli_key_lifecycle_revocation_applies_to_open_connection(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path)
    created = daemon.cli("keys", "create", "--role", "operator", "--name", "ci-script", "--json")
    assert created.returncode == 0, created.stderr
    import json

    record = json.loads(created.stdout)
    key = record["key"]
    assert key.startswith("csk_")
    keys_file = tmp_path / "state" / "api_keys.json"
    assert (keys_file.stat().st_mode & 0o777) == 0o600
    assert key not in keys_file.read_text()
    await daemon.start()
    try:
        async with CameraClient(daemon.ws_url) as client:
            assert (await client.authenticate(key))["role"] == "operator"
            assert (await client.call("get_server_info"))["name"] == "camera-service"
            revoked = await asyncio.to_thread(daemon.cli, "keys", "revoke", record["id"])
            assert revoked.returncode == 0, revoked.stderr
            with pytest.raises(RpcCallError) as info:
                await client.call("get_server_info")
            assert info.value.code == -32001
            assert info.value.data == {"reason": "API key revoked"}
        listing = daemon.cli("keys", "list", "--json")
        assert json.loads(listing.stdout)[0]["revoked_at"] is not None
        assert key not in listing.stdout
    finally:
        daemon.signal(__import__("signal").SIGTERM)
        assert await daemon.wait() == 0
    assert not any(key in line for line in daemon.log_lines)
    assert any(
        '"audit": true' in line and "authentication succeeded" in line for line in daemon.log_lines
    )


async def test_bad_per_call_tokens_count_toward_the_failed_auth_limit(
    daemon: RunningDaemon,
) -> None:
    async with CameraClient(daemon.ws_url) as client:
        for _ in range(5):
            with pytest.raises(RpcCallError) as info:
                await client.call("get_server_info", {"auth_token": "forged"})
            assert info.value.code == -32001
        with pytest.raises(RpcCallError) as limited:
            await client.call("get_server_info", {"auth_token": daemon.keys["viewer"]})
        assert limited.value.code == -32040
