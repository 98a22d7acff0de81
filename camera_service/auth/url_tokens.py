"""Signed camera URL tokens: a ``token`` query that opens one camera's snapshot and MJPEG URLs.

Token text: ``c1.<expiry>.<signature>``; ``signature`` is URL-safe base64 (no padding) of
HMAC-SHA256(secret, ``"camera-url v1\\0" device "\\0" expiry``). The device is not carried in
the token: the verifier supplies the one from the request path, so a token for one camera
never opens another. Pure module, no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time

PREFIX = "c1."
MAX_TTL_S = 366 * 86400
_TOKEN_RE = re.compile(r"c1\.(?P<expiry>[0-9]{1,12})\.(?P<sig>[A-Za-z0-9_-]{43})")


class UrlTokenError(Exception):
    """Malformed, tampered, for another camera, or expired; the message is safe to show."""


def derive_camera_url_secret(master: bytes) -> bytes:
    """A key of its own, so camera URL tokens never pass as JWTs or download tokens."""
    return hmac.new(master, b"camera-service camera urls v1", hashlib.sha256).digest()


def looks_like_camera_token(token: str) -> bool:
    return token.startswith(PREFIX)


def _signature(secret: bytes, device: str, expiry: int) -> str:
    message = b"\0".join([b"camera-url v1", device.encode(), str(expiry).encode()])
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def make_camera_token(secret: bytes, device: str, ttl_s: float, now: float | None = None) -> str:
    if not secret:
        raise ValueError("camera URL token secret must not be empty")
    if not 0 < ttl_s <= MAX_TTL_S:
        raise ValueError(f"ttl_s must be in (0, {MAX_TTL_S}]")
    expiry = int((time.time() if now is None else now) + ttl_s)
    return f"{PREFIX}{expiry}.{_signature(secret, device, expiry)}"


def verify_camera_token(secret: bytes, token: str, device: str, now: float | None = None) -> int:
    """Check ``token`` for ``device``; return its expiry (epoch seconds) or raise."""
    match = _TOKEN_RE.fullmatch(token)
    if match is None:
        raise UrlTokenError("malformed camera token")
    expiry = int(match.group("expiry"))
    expected = _signature(secret, device, expiry)
    if not hmac.compare_digest(expected.encode(), match.group("sig").encode()):
        raise UrlTokenError("token not valid for this camera")
    if (time.time() if now is None else now) >= expiry:
        raise UrlTokenError("camera token expired")
    return expiry
