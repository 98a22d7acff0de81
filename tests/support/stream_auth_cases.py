"""The stream-access decision table, shared by the pure unit test and the HTTP test.

Every action × credential kind × role × state (valid / expired / revoked / wrong path) ×
carrier (how MediaMTX passes the credential for that protocol), each as the body MediaMTX
would send (built by :class:`tests.support.fake_mediamtx_auth.MediaMTXAuthCaller`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from camera_service.auth.api_keys import ApiKeyStore
from camera_service.auth.daemon_credentials import DaemonCredentials
from camera_service.auth.identity import Identity
from camera_service.auth.jwt import JwtAuthority
from camera_service.auth.roles import Role
from camera_service.auth.stream_tokens import StreamTokens
from tests.support.fake_mediamtx_auth import Credentials, MediaMTXAuthCaller

CAMERA = "camera0"
OTHER_CAMERA = "camera1"
UNKNOWN_PATH = "nosuchpath"
KNOWN_PATHS = frozenset({CAMERA, OTHER_CAMERA})
STREAM_ACTIONS = ("read", "playback")
DAEMON_ACTIONS = ("api", "metrics", "pprof")
ROLES = (Role.VIEWER, Role.OPERATOR, Role.ADMIN)
#: How each protocol carries a viewer credential (read from MediaMTX's servers).
CARRIERS = {
    "rtsp": ("password", "query"),  # rtsp://user:<cred>@host/path, rtsp://host/path?token=
    "hls": ("password", "bearer", "query"),
    "webrtc": ("password", "bearer", "query"),
}


@dataclass(frozen=True)
class Case:
    id: str
    request: dict[str, Any]
    allowed: bool
    #: Whether a denial counts toward the failed-auth limit (None: allowed).
    counted: bool | None


@dataclass
class World:
    """Credentials of every kind, made with the daemon's own issuers."""

    jwt: JwtAuthority
    keys: ApiKeyStore
    tokens: StreamTokens
    daemon: DaemonCredentials
    valid_jwt: dict[Role, str]
    expired_jwt: dict[Role, str]
    valid_key: dict[Role, str]
    revoked_key: dict[Role, str]
    identities: dict[str, Identity]


def make_world(
    state_dir: Path, jwt: JwtAuthority, keys: ApiKeyStore, tokens: StreamTokens,
    daemon: DaemonCredentials,
) -> World:  # fmt: skip
    now = time.time()
    world = World(jwt, keys, tokens, daemon, {}, {}, {}, {}, {})
    for role in ROLES:
        world.valid_jwt[role] = jwt.issue(f"user-{role.label}", role, 3600)
        world.expired_jwt[role] = jwt.issue(f"old-{role.label}", role, 60, now=now - 7200)
        key, _ = keys.create(f"{role.label}-key", role)
        world.valid_key[role] = key
        revoked, record = keys.create(f"{role.label}-revoked", role)
        world.revoked_key[role] = revoked
        world.identities[revoked] = keys.verify(revoked)  # captured before the revocation
        keys.revoke(record.id)
    return world


def _carry(protocol: str, carrier: str, credential: str) -> tuple[Credentials, str]:
    if carrier == "password":
        user = "viewer" if protocol == "rtsp" else "user"
        return Credentials(user, credential), ""
    if carrier == "bearer":
        return Credentials(token=credential), ""
    return Credentials(), f"token={credential}"


def _stream_tokens(world: World, role: Role) -> Iterator[tuple[str, str, bool]]:
    """(state, token, allowed) for tokens issued on camera0 to a key / JWT of ``role``."""
    now = time.time()
    key_identity = world.keys.verify(world.valid_key[role])
    jwt_identity = world.jwt.verify(world.valid_jwt[role])
    revoked_identity = world.identities[world.revoked_key[role]]
    yield "valid-key-bound", world.tokens.issue(CAMERA, now, key_identity), True
    yield "valid-jwt-bound", world.tokens.issue(CAMERA, now, jwt_identity), True
    yield "expired", world.tokens.issue(CAMERA, now - 2 * world.tokens.ttl_s), False
    yield "revoked", world.tokens.issue(CAMERA, now, revoked_identity), False
    yield "wrong-path", world.tokens.issue(OTHER_CAMERA, now, key_identity), False


def viewer_credentials(world: World) -> Iterator[tuple[str, str, str, bool, str]]:
    """(kind, role, state, credential, allowed-on-camera0) for read/playback."""
    for role in ROLES:
        yield "jwt", role.label, "valid", world.valid_jwt[role], True
        yield "jwt", role.label, "expired", world.expired_jwt[role], False
        yield "api_key", role.label, "valid", world.valid_key[role], True
        yield "api_key", role.label, "revoked", world.revoked_key[role], False
        for state, token, allowed in _stream_tokens(world, role):
            yield "stream_token", role.label, state, token, allowed
    yield "garbage", "-", "invalid", "not-a-credential", False
    yield "forged_token", "-", "invalid", "cst1.9999999999.-." + "A" * 43, False


def cases(world: World, caller: MediaMTXAuthCaller) -> Iterator[Case]:
    daemon_api, publisher = world.daemon.api, world.daemon.publisher
    api_creds = Credentials(daemon_api.user, daemon_api.password)
    pub_creds = Credentials(publisher.user, publisher.password)

    # read / playback: every viewer credential through every carrier of every protocol.
    for action in STREAM_ACTIONS:
        protocols = CARRIERS if action == "read" else {"": ("password", "bearer")}
        for protocol, carriers in protocols.items():
            for carrier in carriers:
                for kind, role, state, credential, ok in viewer_credentials(world):
                    creds, query = _carry(protocol or "hls", carrier, credential)
                    body = caller.body(
                        action=action, path=CAMERA, protocol=protocol, creds=creds, query=query
                    )
                    yield Case(
                        f"{action}-{protocol or 'http'}-{carrier}-{kind}-{role}-{state}",
                        body, ok, None if ok else True,
                    )  # fmt: skip
                    if ok and kind != "stream_token":  # not path-scoped, but cameras only
                        body = caller.body(
                            action=action, path=UNKNOWN_PATH, protocol=protocol, creds=creds,
                            query=query,
                        )  # fmt: skip
                        yield Case(
                            f"{action}-{protocol or 'http'}-{carrier}-{kind}-{role}-unknown-path",
                            body, False, False,
                        )  # fmt: skip
            anon = caller.body(action=action, path=CAMERA, protocol=protocol)
            yield Case(f"{action}-{protocol or 'http'}-anonymous", anon, False, False)
            daemon = caller.body(action=action, path=CAMERA, protocol=protocol, creds=api_creds)
            yield Case(f"{action}-{protocol or 'http'}-daemon-api", daemon, True, None)
            pub = caller.body(action=action, path=CAMERA, protocol=protocol, creds=pub_creds)
            yield Case(f"{action}-{protocol or 'http'}-publisher-cred", pub, False, False)

    # publish: only the publisher credential, from loopback, to a camera path.
    for protocol in ("rtsp", "rtmp", "webrtc", "srt"):
        for kind, role, state, credential, _ in viewer_credentials(world):
            creds, query = _carry("hls", "password", credential)
            body = caller.body(
                action="publish", path=CAMERA, protocol=protocol, creds=creds, query=query
            )
            yield Case(f"publish-{protocol}-{kind}-{role}-{state}", body, False, True)
        ok = caller.body(action="publish", path=CAMERA, protocol=protocol, creds=pub_creds)
        yield Case(f"publish-{protocol}-publisher", ok, True, None)
        remote = caller.body(
            action="publish", path=CAMERA, protocol=protocol, creds=pub_creds, ip="192.0.2.7"
        )
        yield Case(f"publish-{protocol}-publisher-remote", remote, False, True)
        unknown = caller.body(
            action="publish", path=UNKNOWN_PATH, protocol=protocol, creds=pub_creds
        )
        yield Case(f"publish-{protocol}-publisher-unknown-path", unknown, False, False)
        api = caller.body(action="publish", path=CAMERA, protocol=protocol, creds=api_creds)
        yield Case(f"publish-{protocol}-daemon-api", api, False, False)
        anon = caller.body(action="publish", path=CAMERA, protocol=protocol)
        yield Case(f"publish-{protocol}-anonymous", anon, False, False)

    # api / metrics / pprof: only the daemon's API credential.
    for action in DAEMON_ACTIONS:
        for kind, role, state, credential, _ in viewer_credentials(world):
            body = caller.body(action=action, creds=Credentials(token=credential))
            yield Case(f"{action}-{kind}-{role}-{state}", body, False, True)
        yield Case(f"{action}-daemon-api", caller.body(action=action, creds=api_creds), True, None)
        pub = caller.body(action=action, creds=pub_creds)
        yield Case(f"{action}-publisher-cred", pub, False, False)
        yield Case(f"{action}-anonymous", caller.body(action=action), False, False)

    yield Case(
        "unknown-action", caller.body(action="delete", path=CAMERA, creds=api_creds), False, False
    )
