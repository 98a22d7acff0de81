"""Background loops of the running daemon: the session sweep and the systemd ready notice."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from camera_service.auth.identity import AuthError
from camera_service.wiring.stream_auth import kick_revoked_sessions

if TYPE_CHECKING:
    from camera_service.app import Application

SESSION_SWEEP_INTERVAL_S = 1.0


async def sweep_sessions(app: Application) -> None:
    """Drop notifications to sessions whose JWT expired or whose key was revoked."""
    while True:
        await asyncio.sleep(SESSION_SWEEP_INTERVAL_S)
        app.keys.refresh_if_changed()
        kick_revoked_sessions(app)
        for session in list(app.ws.sessions.values()):
            if session.identity is None:
                continue
            try:
                app.authenticator.recheck(session.identity, refresh=False)
            except AuthError:
                app.bus.drop(session.subscriber_id)


async def notify_ready(app: Application) -> None:
    await app.health.wait_ready()
    app.notifier.ready(f"listening on :{app.ws.port} (ws) and :{app.http.port} (http)")
