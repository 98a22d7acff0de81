"""Every registered method × every credential case → the expected outcome.

Generated from the registry, so a method added later cannot skip it. Auth is checked before
params, so "allowed" means: no -32001/-32002 (a -32602 for missing params still proves the call
got past the role check)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest

from camera_service.auth.roles import Role
from camera_service.client import CameraClient
from camera_service.rpc.registry import MethodSpec
from tests.support.daemon import RunningDaemon, running_daemon

AUTH_CODES = {-32001, -32002}
SAMPLE_PARAMS: dict[str, dict[str, Any]] = {
    "subscribe_events": {"topics": ["camera.*"]},
}


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[RunningDaemon]:
    """Every bad per-call token counts toward the failed-auth limit, and the matrix sends one
    per method: raise the limit so the matrix sees -32001, not -32040."""
    async with running_daemon(tmp_path, {"auth": {"failed_auth_limit": 10000}}) as running:
        yield running


CASES = ["no_auth", "viewer", "operator", "admin", "expired_jwt", "revoked_key", "wrong_secret_jwt"]


def expected_code(spec: MethodSpec, case: str) -> int | None:
    """None: the call must get past authentication and authorization."""
    if spec.role is None:
        return None
    if case in ("no_auth", "expired_jwt", "revoked_key", "wrong_secret_jwt"):
        return -32001
    return None if Role.parse(case) >= spec.role else -32002


async def credential_client(daemon: RunningDaemon, case: str) -> tuple[CameraClient, str | None]:
    """A connected client for the case, plus a per-call auth_token when the case uses one."""
    client = CameraClient(daemon.ws_url)
    await client.connect()
    if case in ("viewer", "operator", "admin"):
        await client.authenticate(daemon.token(Role.parse(case)))
    elif case == "revoked_key":
        key, record = daemon.app.keys.create("soon-revoked", Role.ADMIN)
        await client.authenticate(key)
        daemon.app.keys.revoke(record.id)
    elif case == "expired_jwt":
        now = int(time.time())
        token = daemon.app.jwt.issue("old", Role.ADMIN, 60, now=now - 3600)
        return client, token
    elif case == "wrong_secret_jwt":
        claims = {
            "sub": "x",
            "role": "admin",
            "iat": int(time.time()),
            "exp": int(time.time()) + 60,
        }
        return client, pyjwt.encode(claims, b"another-secret-of-enough-length!!", algorithm="HS256")
    return client, None


@pytest.mark.parametrize("case", CASES)
async def test_auth_matrix(daemon: RunningDaemon, case: str) -> None:
    client, token = await credential_client(daemon, case)
    failures = []
    try:
        # authenticate runs last: it rebinds the connection's identity.
        specs = sorted(daemon.app.registry, key=lambda s: s.name == "authenticate")
        for spec in specs:
            params = dict(SAMPLE_PARAMS.get(spec.name, {}))
            if spec.name == "authenticate":
                params = {"auth_token": daemon.keys["viewer"]}
            if token is not None and spec.name != "authenticate":
                params["auth_token"] = token
            response = await client.request(spec.name, params)
            code = response.get("error", {}).get("code")
            want = expected_code(spec, case)
            if want is None and code in AUTH_CODES:
                failures.append(f"{spec.name}: expected allowed, got {code}")
            elif want is not None and code != want:
                failures.append(f"{spec.name}: expected {want}, got {code}")
            elif want == -32002:
                assert response["error"]["data"]["required_role"] == spec.role.label  # type: ignore[union-attr]
                assert response["error"]["data"]["have_role"] == case
    finally:
        await client.close()
    assert not failures, failures


def test_every_method_is_declared_completely(daemon: RunningDaemon) -> None:
    for spec in daemon.app.registry:
        assert spec.doc.strip(), spec.name
        assert spec.params is not None and spec.result is not None, spec.name
    assert len(daemon.app.registry) >= 10
