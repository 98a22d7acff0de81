"""Stream access decisions (pure) and stream tokens, from MediaMTX's real request format."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from camera_service.auth.api_keys import ApiKeyStore, looks_like_api_key
from camera_service.auth.daemon_credentials import (
    DaemonCredentials,
    load_or_create_credentials,
)
from camera_service.auth.identity import Identity
from camera_service.auth.jwt import JwtAuthority
from camera_service.auth.roles import Role
from camera_service.auth.service import FailedAuthLimiter
from camera_service.auth.stream_access import (
    AccessPolicy,
    AccessRequest,
    BadAccessRequest,
    is_loopback,
)
from camera_service.auth.stream_tokens import StreamTokenError, StreamTokens
from camera_service.transport.mediamtx_auth import SessionLedger, StreamAuthEndpoint
from tests.support.fake_mediamtx_auth import Credentials, MediaMTXAuthCaller, http_credentials
from tests.support.stream_auth_cases import KNOWN_PATHS, Case, World, cases, make_world

SECRET = b"s" * 64


def policy_for(world: World) -> AccessPolicy:
    def verify(credential: str) -> Identity:
        if looks_like_api_key(credential):
            return world.keys.verify(credential, refresh=False)
        return world.jwt.verify(credential)

    return AccessPolicy(
        credentials=world.daemon,
        tokens=world.tokens,
        verify=verify,
        key_active=lambda key_id: world.keys.is_active(key_id, refresh=False),
        known_path=KNOWN_PATHS.__contains__,
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    state = tmp_path_factory.mktemp("state")
    return make_world(
        state,
        JwtAuthority(SECRET),
        ApiKeyStore(state / "api_keys.json"),
        StreamTokens(b"t" * 32, ttl_s=300),
        DaemonCredentials.generate(),
    )


CALLER = MediaMTXAuthCaller("http://127.0.0.1:1/mediamtx/auth")


def all_cases(world: World) -> list[Case]:
    return list(cases(world, CALLER))


def test_decision_table(world: World) -> None:
    policy = policy_for(world)
    table = all_cases(world)
    assert len(table) > 300
    assert len({case.id for case in table}) == len(table)
    wrong = []
    for case in table:
        decision = policy.decide(AccessRequest.from_body(case.request), time.time())
        counted = None if decision.allowed else decision.failure
        if (decision.allowed, counted) != (case.allowed, case.counted):
            wrong.append((case.id, decision))
    assert wrong == []


def test_table_covers_every_dimension(world: World) -> None:
    ids = {case.id for case in all_cases(world)}
    for action in ("read", "playback", "publish", "api", "metrics", "pprof"):
        for kind in ("jwt", "api_key", "stream_token"):
            for role in ("viewer", "operator", "admin"):
                assert any(i.startswith(action) and f"-{kind}-{role}-" in i for i in ids), (
                    action, kind, role,
                )  # fmt: skip
    for state in ("valid", "expired", "revoked", "wrong-path", "unknown-path"):
        assert any(i.endswith(state) for i in ids), state


def test_rate_limited_address_is_refused_except_the_daemon(world: World) -> None:
    policy = policy_for(world)
    viewer = CALLER.body(
        action="read", path="camera0", protocol="rtsp",
        creds=Credentials("u", world.valid_key[Role.VIEWER]),
    )  # fmt: skip
    limited = policy.decide(AccessRequest.from_body(viewer), time.time(), rate_limited=True)
    assert not limited.allowed and "too many" in limited.reason
    pub = world.daemon.publisher
    publish = CALLER.body(
        action="publish", path="camera0", protocol="rtsp",
        creds=Credentials(pub.user, pub.password),
    )  # fmt: skip
    assert policy.decide(AccessRequest.from_body(publish), time.time(), rate_limited=True).allowed


def test_revoked_key_is_refused_at_once(world: World, tmp_path: Path) -> None:
    keys = ApiKeyStore(tmp_path / "keys.json")
    key, record = keys.create("cam-viewer", Role.VIEWER)
    tokens = StreamTokens(b"t" * 32)
    stream_token = tokens.issue("camera0", time.time(), keys.verify(key))
    local = World(world.jwt, keys, tokens, world.daemon, {}, {}, {}, {}, {})
    policy = policy_for(local)
    bodies = [
        CALLER.body(action="read", path="camera0", protocol="hls", query=f"token={key}"),
        CALLER.body(action="read", path="camera0", protocol="hls", query=f"token={stream_token}"),
    ]
    requests = [AccessRequest.from_body(b) for b in bodies]
    assert all(policy.decide(r, time.time()).allowed for r in requests)
    keys.revoke(record.id)
    decisions = [policy.decide(r, time.time()) for r in requests]
    assert [d.allowed for d in decisions] == [False, False]
    assert {d.reason for d in decisions} == {"API key revoked"}


def test_jwt_bound_stream_token_ends_with_the_jwt() -> None:
    tokens = StreamTokens(b"t" * 32, ttl_s=600)
    now = 1_000_000.0
    identity = Identity("alice", Role.VIEWER, "jwt", expires_at=now + 60)
    token = tokens.issue("camera0", now, identity)
    assert tokens.verify(token, "camera0", now + 59).expiry == int(now + 60)
    with pytest.raises(StreamTokenError, match="expired"):
        tokens.verify(token, "camera0", now + 60)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t.replace("cst1", "cst2"),
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),
        lambda t: t.replace(".-.", ".abcd."),
        lambda t: t + "x",
        lambda t: "",
    ],
)
def test_tampered_stream_tokens_are_invalid(mutate: object) -> None:
    tokens = StreamTokens(b"t" * 32)
    token = tokens.issue("camera0", 1000.0)
    assert callable(mutate)
    with pytest.raises(StreamTokenError, match=r"malformed|not valid"):
        tokens.verify(mutate(token), "camera0", 1000.0)


def test_stream_token_is_url_safe() -> None:
    token = StreamTokens(b"t" * 32).issue("camera0", 1000.0)
    assert all(c.isalnum() or c in "._-" for c in token)


@pytest.mark.parametrize(
    "body, message",
    [
        ([], "JSON object"),
        ({"action": ""}, "action is required"),
        ({"action": "read", "user": 5}, "user must be a string"),
        ({"action": "read", "id": 7}, "id must be"),
        ({"action": "read", "path": "x" * 9000}, "longer than"),
    ],
)
def test_bad_bodies_are_refused_with_a_reason(body: object, message: str) -> None:
    with pytest.raises(BadAccessRequest, match=message):
        AccessRequest.from_body(body)


def test_unknown_members_and_nulls_are_tolerated() -> None:
    req = AccessRequest.from_body({"action": "api", "id": None, "user": None, "newField": 1})
    assert (req.action, req.id, req.user) == ("api", None, "")


def test_http_credentials_follow_mediamtx() -> None:
    assert http_credentials("Bearer a:b") == Credentials("a", "b")
    assert http_credentials("Bearer eyJ.x.y") == Credentials(token="eyJ.x.y")
    assert http_credentials("Basic dTpw") == Credentials("u", "p")


@pytest.mark.parametrize(
    "ip, loopback",
    [("127.0.0.1", True), ("::1", True), ("::ffff:127.0.0.1", True), ("10.0.0.1", False),
     ("", False), ("nonsense", False)],
)  # fmt: skip
def test_loopback(ip: str, loopback: bool) -> None:
    assert is_loopback(ip) is loopback


def test_daemon_credentials_file_is_private_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "state" / "mediamtx_credentials.json"
    first = load_or_create_credentials(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_credentials(path) == first
    assert first.api.password != first.publisher.password

    # Only the daemon holds them: a damaged file is kept aside and replaced.
    damaged = b'{"api": {"user": "x", "password": "short"}, "publisher": {}}'
    path.write_bytes(damaged)
    fresh = load_or_create_credentials(path)
    assert fresh != first and load_or_create_credentials(path) == fresh
    (copy,) = path.parent.glob("mediamtx_credentials.json.corrupt-*")
    assert copy.read_bytes() == damaged
    path.write_bytes(b"\x00\xff")
    assert load_or_create_credentials(path) not in (first, fresh)


def test_only_key_bound_credentials_need_the_key_store(world: World) -> None:
    now = time.time()
    unbound = world.tokens.issue("camera0", now)
    bound = world.tokens.issue("camera0", now, world.keys.verify(world.valid_key[Role.VIEWER]))
    need = {
        name: AccessRequest.from_body(CALLER.body(action="read", path="camera0", protocol="hls",
                                                  query=f"token={credential}")).needs_key_store()
        for name, credential in [("unbound", unbound), ("bound", bound),
                                 ("key", world.valid_key[Role.VIEWER]),
                                 ("jwt", world.valid_jwt[Role.VIEWER])]
    }  # fmt: skip
    assert need == {"unbound": False, "bound": True, "key": True, "jwt": False}


def test_session_ledger_is_bounded_and_gives_revoked_sessions_once() -> None:
    ledger = SessionLedger(limit=3)
    for i in range(5):
        ledger.record("k1" if i % 2 else "k2", "rtsp", f"s{i}")
    assert len(ledger) == 3  # s0 and s1 forgotten
    revoked = ledger.take_revoked(lambda key_id: key_id != "k2")
    assert revoked == [("rtsp", "s2"), ("rtsp", "s4")]
    assert ledger.take_revoked(lambda key_id: key_id != "k2") == []
    assert len(ledger) == 1


@pytest.mark.parametrize(
    "remote, allowed",
    [("127.0.0.1", True), ("::1", True), ("192.0.2.9", True), ("::ffff:192.0.2.9", True),
     ("192.0.2.10", False), (None, False), ("", False)],
)  # fmt: skip
def test_only_loopback_and_configured_mediamtx_addresses_may_call(
    world: World, remote: str | None, allowed: bool
) -> None:
    endpoint = StreamAuthEndpoint(
        policy_for(world), FailedAuthLimiter(5, 60), world.keys, allowed_clients=["192.0.2.9"]
    )
    assert endpoint.caller_allowed(remote) is allowed
