"""Short-lived stream tokens, each scoped to one MediaMTX path (one camera). Pure, no I/O.

Token text: ``cst1.<expiry>.<key>.<signature>``

* ``expiry``: integer epoch seconds; for a caller signed in with a JWT it is never later than
  the JWT's own expiry.
* ``key``: the id of the API key the token was issued to (so revoking the key revokes its
  stream tokens at once), or ``-`` when it was issued to a JWT session or to nobody in
  particular (camera objects in notifications).
* ``signature``: URL-safe base64 (no padding) of HMAC-SHA256(secret,
  ``"stream-v1\\0" path "\\0" expiry "\\0" key``).

The path is not carried in the token: the verifier supplies the path of the request, so a
token for one camera never opens another. Every character is URL-safe, so the token goes
unquoted into a query (``?token=``) and into an RTSP URL's user-info.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass

from camera_service.auth.identity import Identity

PREFIX = "cst1"
NO_KEY = "-"
DEFAULT_TTL_S = 300
_TOKEN_RE = re.compile(
    r"cst1\.(?P<expiry>[0-9]{1,12})\.(?P<key>-|[0-9a-f]{1,32})\.(?P<sig>[A-Za-z0-9_-]{43})"
)


class StreamTokenError(Exception):
    """A stream token was refused; ``reason`` names why (safe to log)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class StreamGrant:
    """What a valid stream token carries."""

    path: str
    expiry: int
    key_id: str | None


def derive_stream_secret(master: bytes) -> bytes:
    """A key of its own for stream tokens (never valid as a JWT or a download token)."""
    return hmac.new(master, b"camera-service stream tokens v1", hashlib.sha256).digest()


def looks_like_stream_token(text: str) -> bool:
    return text.startswith(PREFIX + ".")


def bound_key_id(text: str) -> str | None:
    """The API key id a well-formed token names (unverified), None for unbound tokens."""
    match = _TOKEN_RE.fullmatch(text)
    if match is None or match.group("key") == NO_KEY:
        return None
    return match.group("key")


def _signature(secret: bytes, path: str, expiry: int, key: str) -> str:
    message = b"\0".join([b"stream-v1", path.encode(), str(expiry).encode(), key.encode()])
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class StreamTokens:
    """Issue and verify stream tokens with one secret and a default lifetime."""

    def __init__(self, secret: bytes, ttl_s: float = DEFAULT_TTL_S) -> None:
        if not secret:
            raise ValueError("stream token secret must not be empty")
        if ttl_s <= 0:
            raise ValueError("stream token ttl must be positive")
        self._secret = secret
        self.ttl_s = ttl_s

    def issue(self, path: str, now: float, identity: Identity | None = None) -> str:
        """A token for ``path``, bound to the identity's API key and capped at its expiry."""
        if not path:
            raise ValueError("stream token path must not be empty")
        expiry = int(now + self.ttl_s)
        key = NO_KEY
        if identity is not None:
            if identity.expires_at is not None:
                expiry = min(expiry, int(identity.expires_at))
            if identity.key_id is not None:
                key = identity.key_id
        return f"{PREFIX}.{expiry}.{key}.{_signature(self._secret, path, expiry, key)}"

    def verify(self, token: str, path: str, now: float) -> StreamGrant:
        """Check ``token`` for ``path``. The signature is checked before the expiry, so a
        forged token is reported invalid, never expired."""
        match = _TOKEN_RE.fullmatch(token)
        if match is None:
            raise StreamTokenError("malformed stream token")
        expiry, key = int(match.group("expiry")), match.group("key")
        expected = _signature(self._secret, path, expiry, key)
        if not hmac.compare_digest(expected.encode(), match.group("sig").encode()):
            raise StreamTokenError("stream token is not valid for this path")
        if now >= expiry:
            raise StreamTokenError("stream token expired")
        return StreamGrant(path, expiry, None if key == NO_KEY else key)
