"""Authentication service: turns a credential into an Identity, rechecks sessions per call,
and limits failed attempts per client address."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from camera_service.auth.api_keys import ApiKeyStore, looks_like_api_key
from camera_service.auth.identity import AuthError, Identity
from camera_service.auth.jwt import JwtAuthority


class FailedAuthLimiter:
    """At most `limit` failures per address in a sliding `window` of seconds."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.window = window
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, address: str) -> deque[float]:
        history = self._failures.setdefault(address, deque())
        cutoff = self._clock() - self.window
        while history and history[0] <= cutoff:
            history.popleft()
        return history

    def retry_after_ms(self, address: str) -> int:
        """0 when the address may try again, else how long to wait."""
        history = self._recent(address)
        if len(history) < self.limit:
            if not history:
                self._failures.pop(address, None)
            return 0
        return max(1, int((history[0] + self.window - self._clock()) * 1000))

    def record_failure(self, address: str) -> None:
        self._recent(address).append(self._clock())


class Authenticator:
    def __init__(
        self,
        jwt: JwtAuthority,
        keys: ApiKeyStore,
        limiter: FailedAuthLimiter,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.jwt = jwt
        self.keys = keys
        self.limiter = limiter
        self._clock = clock

    def verify(self, credential: str) -> Identity:
        if not isinstance(credential, str) or not credential:
            raise AuthError("missing credentials")
        if not credential.isascii():
            # Keys and JWTs are ASCII; anything else (a lone surrogate included) cannot match.
            raise AuthError("credentials are not valid: expected ASCII text")
        if looks_like_api_key(credential):
            return self.keys.verify(credential)
        return self.jwt.verify(credential)

    def recheck(self, identity: Identity, *, refresh: bool = True) -> None:
        """Raise if a session's identity is no longer valid (expired JWT, revoked key).

        `refresh=False` skips re-reading the key store, for bulk checks after one refresh."""
        if identity.expired(self._clock()):
            raise AuthError("token expired")
        if identity.key_id is not None and not self.keys.is_active(
            identity.key_id, refresh=refresh
        ):
            raise AuthError("API key revoked")
