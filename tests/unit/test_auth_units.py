from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from camera_service.auth.api_keys import ApiKeyStore
from camera_service.auth.identity import AuthError
from camera_service.auth.jwt import JwtAuthority, load_or_create_secret
from camera_service.auth.roles import Role, allows
from camera_service.auth.service import FailedAuthLimiter
from camera_service.rpc.session import TokenBucket
from tests.support.clock import ManualClock as Clock


def test_role_order() -> None:
    assert allows(Role.ADMIN, Role.OPERATOR) and allows(Role.VIEWER, None)
    assert not allows(Role.VIEWER, Role.OPERATOR) and not allows(None, Role.VIEWER)
    with pytest.raises(ValueError):
        Role.parse("root")


def test_secret_file_is_created_0600_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "state" / "jwt_secret"
    first = load_or_create_secret(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_secret(path) == first and len(first) == 64


def test_jwt_round_trip_and_failures() -> None:
    authority = JwtAuthority(b"k" * 32)
    token = authority.issue("alice", Role.OPERATOR, 60)
    identity = authority.verify(token)
    assert (identity.subject, identity.role, identity.method) == ("alice", Role.OPERATOR, "jwt")
    expired = authority.issue("alice", Role.OPERATOR, 60, now=0)
    with pytest.raises(AuthError, match="token expired"):
        authority.verify(expired)
    with pytest.raises(AuthError, match="signature"):
        JwtAuthority(b"z" * 32).verify(token)
    with pytest.raises(AuthError):
        authority.verify(token[:-3] + "abc")


def test_api_keys_are_hashed_and_revocable_across_instances(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    store = ApiKeyStore(path)
    key, record = store.create("cam-script", Role.OPERATOR)
    assert key not in path.read_text() and record.hash in path.read_text()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert store.verify(key).role is Role.OPERATOR
    ApiKeyStore(path).revoke(record.id)  # another process, as the CLI would
    with pytest.raises(AuthError, match="revoked"):
        store.verify(key)
    with pytest.raises(AuthError, match="invalid API key"):
        store.verify(key[:-1] + ("A" if key[-1] != "A" else "B"))


def test_failed_auth_limiter_window() -> None:
    clock = Clock()
    limiter = FailedAuthLimiter(limit=2, window=60, clock=clock)
    limiter.record_failure("1.2.3.4")
    assert limiter.retry_after_ms("1.2.3.4") == 0
    limiter.record_failure("1.2.3.4")
    assert limiter.retry_after_ms("1.2.3.4") == 60000
    assert limiter.retry_after_ms("5.6.7.8") == 0
    clock.now += 60.001
    assert limiter.retry_after_ms("1.2.3.4") == 0


def test_token_bucket() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=10, burst=2, clock=clock)
    assert bucket.take() == 0 and bucket.take() == 0
    assert bucket.take() == 100
    clock.now += 0.1
    assert bucket.take() == 0
