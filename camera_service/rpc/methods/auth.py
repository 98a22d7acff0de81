"""authenticate: bind an identity (JWT or API key) to the connection."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from pydantic import Field

from camera_service.auth.identity import AuthError
from camera_service.auth.roles import PERMISSIONS
from camera_service.auth.service import Authenticator
from camera_service.logging import audit
from camera_service.rpc.errors import AuthenticationFailed, RateLimited
from camera_service.rpc.registry import Params, Registry, Result
from camera_service.rpc.session import CallContext, Session


class AuthenticateParams(Params):
    auth_token: str = Field(..., min_length=1, max_length=8192, description="JWT or API key")


class AuthenticateResult(Result):
    authenticated: bool
    role: str
    permissions: list[str]
    expires_at: str | None
    session_id: str


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def register(
    registry: Registry,
    authenticator: Authenticator,
    on_first_authentication: Callable[[Session], None],
) -> None:

    @registry.method(
        "authenticate", params=AuthenticateParams, result=AuthenticateResult, role=None, inline=True
    )
    async def authenticate(ctx: CallContext, params: AuthenticateParams) -> AuthenticateResult:
        """Authenticate the connection with a JWT or an API key; later calls use that identity."""
        session = ctx.session
        wait_ms = authenticator.limiter.retry_after_ms(session.remote)
        if wait_ms:
            audit("authentication refused", remote=session.remote, result="rate_limited")
            raise RateLimited(wait_ms, scope="address")
        try:
            identity = authenticator.verify(params.auth_token)
        except AuthError as exc:
            authenticator.limiter.record_failure(session.remote)
            audit("authentication failed", remote=session.remote, reason=exc.reason)
            raise AuthenticationFailed(exc.reason) from None
        try:
            # Built before anything is bound: authentication is all or nothing.
            result = AuthenticateResult(
                authenticated=True,
                role=identity.role.label,
                permissions=PERMISSIONS[identity.role],
                expires_at=_iso(identity.expires_at),
                session_id=session.session_id,
            )
        except (ValueError, OverflowError, OSError):
            authenticator.limiter.record_failure(session.remote)
            audit("authentication failed", remote=session.remote, reason="expiry out of range")
            raise AuthenticationFailed("token expiry is out of range") from None
        first_time = session.identity is None
        session.identity = identity
        if first_time:
            on_first_authentication(session)
        audit(
            "authentication succeeded",
            who=identity.subject,
            role=identity.role.label,
            remote=session.remote,
            method=identity.method,
        )
        return result
