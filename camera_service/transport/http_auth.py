"""Credential checks shared by the authenticated HTTP routes on 8003 (file downloads, camera
URLs): the per-address failed-authentication limit of WebSocket ``authenticate`` applies to
them too, and every failure is audited."""

from __future__ import annotations

from typing import Any

from camera_service.auth.service import Authenticator
from camera_service.logging import audit
from camera_service.transport import web


def refuse_if_limited(auth: Authenticator, remote: str, what: str, **fields: Any) -> None:
    """429 with ``Retry-After`` while ``remote`` is over the failed-authentication limit."""
    wait_ms = auth.limiter.retry_after_ms(remote)
    if wait_ms:
        audit(what, remote=remote, result="rate_limited", **fields)
        raise web.HTTPTooManyRequests(
            text="too many failed authentication attempts",
            headers={"Retry-After": str(max(1, (wait_ms + 999) // 1000))},
        )


def record_failure(auth: Authenticator, remote: str, reason: str, **fields: Any) -> None:
    """A refused credential: counted toward the address's limit and audited."""
    auth.limiter.record_failure(remote)
    audit("authentication failed", remote=remote, reason=reason, channel="http", **fields)
