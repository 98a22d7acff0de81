"""Stream access decisions for MediaMTX's HTTP authentication (``authMethod: http``).

Pure: no I/O, no clock. :meth:`AccessPolicy.decide` takes one request exactly as MediaMTX
v1.20 sends it (``internal/auth/manager.go``, ``authenticateHTTP``)::

    {"ip", "user", "password", "token", "action", "path", "protocol", "id", "query",
     "userAgent"}

and answers allow or deny. What MediaMTX puts there (read in its source):

* ``user``/``password``: RTSP Basic auth (``rtsp://user:pass@host/...``; ``rtspAuthMethods``
  must be ``[basic]`` for the password to reach us), HTTP Basic, or ``Authorization: Bearer
  user:pass`` (HLS, WebRTC, API).
* ``token``: ``Authorization: Bearer <token>``; else the password; else, for RTSP and RTMP
  only, the ``token`` (or legacy ``jwt``) query parameter. HLS and WebRTC pass the query
  only in ``query`` (the raw query string), which is parsed here.
* ``action``: ``publish``, ``read``, ``playback``, ``api``, ``metrics``, ``pprof``; ``path``
  and ``protocol`` are empty for the last three. ``id`` is the session's UUID (null for
  requests outside a session, e.g. the WebRTC page or the HLS index page).
* A client that sent no credentials is asked for them (RTSP/HTTP 401 with a challenge)
  only when the first answer is a deny: every RTSP session and every FFmpeg publisher
  starts with one anonymous request. Anonymous denials therefore never count as failures.

Rules:

* ``read`` / ``playback`` of a camera path: a viewer-or-better JWT or API key (as password,
  bearer token, or ``token`` query), a stream token for that path, or the daemon's API
  credential. Expired JWTs, revoked keys (and stream tokens issued to them) are refused.
* ``publish`` to a camera path: only the daemon's publisher credential, from loopback.
* ``api`` / ``metrics`` / ``pprof``: only the daemon's API credential.
* Paths that are not cameras, unknown actions: refused.
* While the client address is over the failed-auth limit everything but the daemon's own
  credentials is refused.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs

from camera_service.auth.api_keys import looks_like_api_key
from camera_service.auth.daemon_credentials import DaemonCredentials
from camera_service.auth.identity import AuthError, Identity
from camera_service.auth.roles import Role, allows
from camera_service.auth.stream_tokens import (
    StreamTokenError,
    StreamTokens,
    bound_key_id,
    looks_like_stream_token,
)

STREAM_ACTIONS = frozenset({"read", "playback"})
DAEMON_ACTIONS = frozenset({"api", "metrics", "pprof"})
ACTIONS = STREAM_ACTIONS | DAEMON_ACTIONS | {"publish"}
MAX_FIELD_CHARS = 8192
MAX_CANDIDATES = 4

CredentialKind = Literal["daemon", "publisher", "jwt", "api_key", "stream_token", "none", "invalid"]


class BadAccessRequest(ValueError):
    """The body is not a MediaMTX authentication request."""


@dataclass(frozen=True, slots=True)
class AccessRequest:
    action: str
    path: str = ""
    protocol: str = ""
    ip: str = ""
    user: str = ""
    password: str = ""
    token: str = ""
    id: str | None = None
    query: str = ""
    user_agent: str = ""

    @classmethod
    def from_body(cls, body: Any) -> AccessRequest:
        """Validate MediaMTX's JSON body; unknown members are ignored (newer releases)."""
        if not isinstance(body, dict):
            raise BadAccessRequest("body must be a JSON object")
        values: dict[str, str] = {}
        for member in ("action", "path", "protocol", "ip", "user", "password", "token", "query"):
            value = body.get(member, "")
            if value is None:
                value = ""
            if not isinstance(value, str):
                raise BadAccessRequest(f"{member} must be a string")
            if len(value) > MAX_FIELD_CHARS:
                raise BadAccessRequest(f"{member} is longer than {MAX_FIELD_CHARS} characters")
            values[member] = value
        session_id = body.get("id")
        if session_id is not None and not isinstance(session_id, str):
            raise BadAccessRequest("id must be a string or null")
        agent = body.get("userAgent", "")
        if not isinstance(agent, str):
            raise BadAccessRequest("userAgent must be a string")
        if not values["action"]:
            raise BadAccessRequest("action is required")
        return cls(
            values["action"], values["path"], values["protocol"], values["ip"],
            values["user"], values["password"], values["token"], session_id or None,
            values["query"], agent[:256],
        )  # fmt: skip

    def candidates(self) -> list[str]:
        """Credentials presented, in MediaMTX's order of precedence, without repeats."""
        found = [self.token, self.password]
        try:
            query = parse_qs(self.query, max_num_fields=32) if self.query else {}
        except ValueError:
            query = {}
        for name in ("token", "jwt"):
            found.extend(query.get(name, [])[:1])
        if not self.password and self.user:
            found.append(self.user)  # rtsp://<token>@host/path
        unique: list[str] = []
        for value in found:
            if value and value not in unique:
                unique.append(value)
        return unique[:MAX_CANDIDATES]

    def presents_credentials(self) -> bool:
        return bool(self.user or self.candidates())

    def needs_key_store(self) -> bool:
        """True when deciding may look an API key up (the caller refreshes the store)."""
        return any(
            looks_like_api_key(c) or (looks_like_stream_token(c) and bound_key_id(c) is not None)
            for c in self.candidates()
        )


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str
    kind: CredentialKind
    subject: str | None = None
    role: str | None = None
    key_id: str | None = None
    #: Counts toward the failed-auth limit of the client address.
    failure: bool = False


def is_ip_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def is_loopback(ip: str) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


class AccessPolicy:
    """Decides MediaMTX authentication requests.

    ``verify`` turns a JWT or API key into an :class:`Identity` (raising
    :class:`AuthError`) without I/O; ``key_active`` tells whether an API key id is still
    active; ``known_path`` whether a path name is a camera's.
    """

    def __init__(
        self,
        *,
        credentials: DaemonCredentials,
        tokens: StreamTokens,
        verify: Callable[[str], Identity],
        key_active: Callable[[str], bool],
        known_path: Callable[[str], bool],
    ) -> None:
        self.credentials = credentials
        self.tokens = tokens
        self._verify = verify
        self._key_active = key_active
        self._known_path = known_path

    def decide(self, req: AccessRequest, now: float, *, rate_limited: bool = False) -> Decision:
        if req.action not in ACTIONS:
            return Decision(False, f"unknown action {req.action!r}", "none")
        if self.credentials.api.matches(req.user, req.password):
            return self._daemon(req)
        if self.credentials.publisher.matches(req.user, req.password):
            return self._publisher(req)
        presented = req.presents_credentials()
        if rate_limited:
            return Decision(False, "too many failed attempts from this address", "none")
        if req.action in DAEMON_ACTIONS:
            return self._refuse(f"{req.action} is reserved for camera-service", presented)
        if req.action == "publish":
            return self._refuse("publishing is reserved for camera-service", presented)
        if not self._known_path(req.path):
            return Decision(False, f"unknown path {req.path!r}", "none")
        return self._viewer(req, now)

    def _daemon(self, req: AccessRequest) -> Decision:
        user = self.credentials.api.user
        if req.action == "publish":
            return Decision(False, "the API credential cannot publish", "daemon", user)
        if req.action in STREAM_ACTIONS and not self._known_path(req.path):
            return Decision(False, f"unknown path {req.path!r}", "daemon", user)
        return Decision(True, "camera-service", "daemon", user)

    def _publisher(self, req: AccessRequest) -> Decision:
        user = self.credentials.publisher.user
        if req.action != "publish":
            return Decision(False, "the publisher credential only publishes", "publisher", user)
        if not is_loopback(req.ip):
            return Decision(
                False, "the publisher credential is valid from loopback only", "publisher",
                user, failure=True,
            )  # fmt: skip
        if not self._known_path(req.path):
            return Decision(False, f"unknown path {req.path!r}", "publisher", user)
        return Decision(True, "camera-service publisher", "publisher", user)

    @staticmethod
    def _refuse(reason: str, presented: bool) -> Decision:
        return Decision(False, reason, "invalid" if presented else "none", failure=presented)

    def _viewer(self, req: AccessRequest, now: float) -> Decision:
        candidates = req.candidates()
        if not candidates:
            return Decision(False, "credentials required", "none")
        first: Decision | None = None
        for candidate in candidates:
            decision = self._check(candidate, req.path, now)
            if decision.allowed:
                return decision
            first = first or decision
        assert first is not None
        return first

    def _check(self, credential: str, path: str, now: float) -> Decision:
        if looks_like_stream_token(credential):
            try:
                grant = self.tokens.verify(credential, path, now)
            except StreamTokenError as exc:
                return Decision(False, exc.reason, "stream_token", failure=True)
            if grant.key_id is not None and not self._key_active(grant.key_id):
                return Decision(
                    False, "API key revoked", "stream_token", key_id=grant.key_id, failure=True
                )
            return Decision(True, "stream token", "stream_token", key_id=grant.key_id)
        kind: CredentialKind = "api_key" if looks_like_api_key(credential) else "jwt"
        try:
            identity = self._verify(credential)
        except AuthError as exc:
            return Decision(False, exc.reason, kind, failure=True)
        if identity.expired(now):
            return Decision(False, "token expired", kind, identity.subject, failure=True)
        if not allows(identity.role, Role.VIEWER):
            return Decision(False, "role too low", kind, identity.subject, failure=True)
        return Decision(
            True, "viewer credential", kind, identity.subject, identity.role.label,
            identity.key_id,
        )  # fmt: skip
