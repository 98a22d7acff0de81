"""HS256 JWTs: issue and verify, and the secret file generated on first start.

PyJWT is imported at the first token issued or verified (the imports inside the methods):
its package imports its JWKS client and with it urllib.request, ~1.7 MB of RSS together on
a node whose clients use API keys only."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

from camera_service.auth.identity import AuthError, Identity
from camera_service.auth.roles import Role
from camera_service.fsutil import atomic_write

ALGORITHM = "HS256"
# 9999-12-31T23:59:59Z: the last instant an ISO-8601 `expires_at` can spell.
MAX_TIMESTAMP = 253402300799


def load_or_create_secret(path: Path) -> bytes:
    """Read the secret file, or create it (0600) with 64 random bytes hex-encoded."""
    if path.exists():
        secret = path.read_text(encoding="utf-8").strip()
        if len(secret) < 32:
            raise ValueError(f"JWT secret in {path} is shorter than 32 characters")
        return secret.encode()
    secret = secrets.token_hex(32)
    atomic_write(path, secret + "\n", mode=0o600)
    return secret.encode()


class JwtAuthority:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def issue(self, subject: str, role: Role, ttl_s: float, now: float | None = None) -> str:
        issued = int(now if now is not None else time.time())
        claims = {"sub": subject, "role": role.label, "iat": issued, "exp": issued + int(ttl_s)}
        import jwt as pyjwt  # lazily, see the module's doc

        return pyjwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> Identity:
        claims = self._decode(token)
        subject = claims.get("sub") or claims.get("user_id")
        if not isinstance(subject, str) or not subject:
            raise AuthError("token has no sub or user_id claim")
        try:
            role = Role.parse(claims.get("role", ""))
        except ValueError:
            raise AuthError("token has no valid role claim") from None
        return Identity(subject, role, "jwt", expires_at=_timestamp(claims, "exp"))

    def _decode(self, token: str) -> dict[str, Any]:
        import jwt as pyjwt  # lazily, see the module's doc

        try:
            claims: dict[str, Any] = pyjwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                options={"require": ["exp", "iat", "role"]},
            )
        except pyjwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except pyjwt.MissingRequiredClaimError as exc:
            raise AuthError(f"token lacks the {exc.claim} claim") from None
        except pyjwt.InvalidSignatureError:
            raise AuthError("invalid token signature") from None
        except pyjwt.InvalidTokenError:
            raise AuthError("invalid token") from None
        except (ValueError, TypeError, OverflowError):
            # Claims PyJWT cannot compare (NaN, 1e400, a huge integer): not a usable token.
            raise AuthError("invalid token") from None
        _timestamp(claims, "iat")
        return claims


def _timestamp(claims: dict[str, Any], name: str) -> float:
    """A time claim as epoch seconds, refused unless a finite number up to year 9999."""
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AuthError(f"token {name} claim is not a number")
    if not 0 <= value <= MAX_TIMESTAMP:  # also false for NaN
        raise AuthError(f"token {name} claim is out of range")
    return float(value)
