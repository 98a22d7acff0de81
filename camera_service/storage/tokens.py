"""Short-lived signed download tokens, each scoped to one file.

Token text: ``<expiry>.<signature>`` where ``expiry`` is integer epoch seconds and
``signature`` is URL-safe base64 (no padding) of HMAC-SHA256(secret,
``"v1\\0" kind "\\0" filename "\\0" expiry``). The kind and name are not carried in the
token: the verifier supplies the ones from the request path, so a token for one file never
opens another. Pure module, no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from urllib.parse import quote

DEFAULT_TTL_S = 600
TOKEN_KINDS = ("recordings", "snapshots", "segments")
_TOKEN_RE = re.compile(r"(?P<expiry>[0-9]{1,12})\.(?P<sig>[A-Za-z0-9_-]{43})")


class TokenError(Exception):
    """Base class of download-token failures."""


class TokenInvalid(TokenError):
    """Malformed token, bad signature or a token for another file."""


class TokenExpired(TokenError):
    """The token's lifetime is over."""


def _check_inputs(secret: bytes, kind: str) -> None:
    if not secret:
        raise ValueError("download token secret must not be empty")
    if kind not in TOKEN_KINDS:
        raise ValueError(f"unknown file kind: {kind!r}")


def _signature(secret: bytes, kind: str, filename: str, expiry: int) -> str:
    message = b"\0".join([b"v1", kind.encode(), filename.encode(), str(expiry).encode()])
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def make_download_token(
    secret: bytes,
    kind: str,
    filename: str,
    ttl_s: float = DEFAULT_TTL_S,
    now: float | None = None,
) -> str:
    """A token that opens ``<kind>/<filename>`` until ``now + ttl_s``."""
    _check_inputs(secret, kind)
    if ttl_s <= 0:
        raise ValueError("ttl_s must be positive")
    expiry = int((time.time() if now is None else now) + ttl_s)
    return f"{expiry}.{_signature(secret, kind, filename, expiry)}"


def verify_download_token(
    secret: bytes, token: str, kind: str, filename: str, now: float | None = None
) -> int:
    """Check ``token`` for ``<kind>/<filename>``; return its expiry (epoch seconds).

    Raises :class:`TokenInvalid` (malformed, tampered, other file) or :class:`TokenExpired`.
    The signature is checked first, so a forged token is reported invalid, never expired.
    """
    _check_inputs(secret, kind)
    match = _TOKEN_RE.fullmatch(token) if isinstance(token, str) else None
    if match is None:
        raise TokenInvalid("malformed download token")
    expiry = int(match.group("expiry"))
    expected = _signature(secret, kind, filename, expiry)
    if not hmac.compare_digest(expected.encode(), match.group("sig").encode()):
        raise TokenInvalid("download token does not match this file")
    if (time.time() if now is None else now) >= expiry:
        raise TokenExpired("download token expired")
    return expiry


def download_url(base_url: str, kind: str, filename: str, token: str) -> str:
    """``<base_url>/files/<kind>/<quoted filename>?token=<token>``.

    ``base_url`` is the HTTP origin of the 8003 server, e.g. ``http://host:8003``.
    """
    if kind not in TOKEN_KINDS:
        raise ValueError(f"unknown file kind: {kind!r}")
    name = quote(filename, safe="")
    return f"{base_url.rstrip('/')}/files/{kind}/{name}?token={quote(token, safe='')}"
