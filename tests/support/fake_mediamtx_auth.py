"""MediaMTX's ``authMethod: http`` client side, as v1.20.1 implements it, for tests.

Transcribed from MediaMTX's source (``internal/auth/manager.go``, ``getToken`` and
``authenticateHTTP``; ``internal/protocols/httpp/credentials.go``;
``internal/protocols/rtsp/credentials.go``):

* HTTP credentials: ``Authorization: Bearer user:pass`` → user/pass; ``Bearer <token>`` →
  token; else HTTP Basic user/pass. RTSP: the Basic user/pass of the RTSP request.
* ``token`` sent to the hook: the bearer token; else the password; else, for RTSP and RTMP
  only, the ``token`` (or ``jwt``) query parameter. HLS/WebRTC queries travel only in
  ``query``.
* ``authHTTPExclude`` entries (``{action, path}``) skip the hook entirely.
* Body: ``{ip, user, password, token, action, path, protocol, id, query, userAgent}``,
  POSTed as JSON; any 2xx allows, anything else denies.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import aiohttp

HTTP_PROTOCOLS = frozenset({"hls", "webrtc"})
HTTP_ACTIONS = frozenset({"playback", "api", "metrics", "pprof"})


@dataclass(frozen=True)
class Credentials:
    user: str = ""
    password: str = ""
    token: str = ""


def http_credentials(authorization: str | None) -> Credentials:
    """``httpp.Credentials``: what MediaMTX reads from an HTTP Authorization header."""
    if not authorization:
        return Credentials()
    if authorization.startswith("Bearer "):
        value = authorization[len("Bearer ") :]
        parts = value.split(":")
        if len(parts) == 2:
            return Credentials(parts[0], parts[1])
        return Credentials(token=value)
    if authorization.startswith("Basic "):
        try:
            decoded = base64.b64decode(authorization[len("Basic ") :]).decode()
        except ValueError:
            return Credentials()
        user, sep, password = decoded.partition(":")
        if sep:
            return Credentials(user, password)
    return Credentials()


def get_token(creds: Credentials, protocol: str, action: str, query: str) -> str:
    """``getToken`` with ``tokenInHTTPQuery`` false (it is only true for authMethod jwt)."""
    if creds.token:
        return creds.token
    if creds.password:
        return creds.password
    if protocol in {"rtsp", "rtmp"}:
        values = parse_qs(query)
        for key in ("token", "jwt"):
            if len(values.get(key, [])) == 1:
                return values[key][0]
    return ""


@dataclass
class MediaMTXAuthCaller:
    """Calls ``auth_http_address`` the way MediaMTX does and records every body sent."""

    auth_http_address: str
    exclude: list[dict[str, str]] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)

    def _excluded(self, action: str, path: str) -> bool:
        for perm in self.exclude:
            if perm.get("action") != action:
                continue
            if action in {"publish", "read", "playback"}:
                if perm.get("path", "") in ("", path):
                    return True
            else:
                return True
        return False

    def body(
        self,
        *,
        action: str,
        path: str = "",
        protocol: str = "",
        ip: str = "127.0.0.1",
        creds: Credentials = Credentials(),
        query: str = "",
        session_id: uuid.UUID | None = None,
        user_agent: str = "",
    ) -> dict[str, Any]:
        return {
            "ip": ip,
            "user": creds.user,
            "password": creds.password,
            "token": get_token(creds, protocol, action, query),
            "action": action,
            "path": path,
            "protocol": protocol,
            "id": str(session_id) if session_id is not None else None,
            "query": query,
            "userAgent": user_agent,
        }

    async def authenticate(self, session: aiohttp.ClientSession, **request: Any) -> bool:
        """True when the hook allows the request (or it is excluded)."""
        if self._excluded(request["action"], request.get("path", "")):
            return True
        body = self.body(**request)
        self.bodies.append(body)
        async with session.post(self.auth_http_address, json=body) as resp:
            await resp.read()
            return 200 <= resp.status <= 299
