"""Who a connection or an HTTP request acts as."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from camera_service.auth.roles import Role


class AuthError(Exception):
    """Credentials rejected; `reason` is safe to show to the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Identity:
    subject: str
    role: Role
    method: Literal["jwt", "api_key", "mqtt"]
    expires_at: float | None = None
    key_id: str | None = None

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at
