"""Stream access control: MediaMTX asks POST /mediamtx/auth before every session. Builds the
daemon's MediaMTX credentials, the per-camera stream tokens and the endpoint, and closes the
MediaMTX sessions of revoked API keys."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from camera_service.auth.api_keys import looks_like_api_key
from camera_service.auth.daemon_credentials import CREDENTIALS_FILE, load_or_create_credentials
from camera_service.auth.identity import Identity
from camera_service.auth.stream_tokens import StreamTokens, derive_stream_secret
from camera_service.fsutil import StateFileError
from camera_service.wiring.startup import StartupError

if TYPE_CHECKING:
    from camera_service.app import Application
    from camera_service.auth.stream_access import AccessPolicy


def build_stream_auth(app: Application, master_secret: bytes) -> None:
    cfg = app.config.mediamtx
    try:
        app.mtx_credentials = load_or_create_credentials(
            app.config.storage.state_dir / CREDENTIALS_FILE
        )
    except StateFileError as exc:
        raise StartupError(str(exc)) from None
    app.stream_tokens = StreamTokens(derive_stream_secret(master_secret), cfg.stream_token_ttl)
    app.stream_auth = None
    if cfg.enabled and cfg.stream_auth:
        # Imported here: the endpoint and its access policy serve MediaMTX only.
        from camera_service.transport.mediamtx_auth import StreamAuthEndpoint

        app.stream_auth = StreamAuthEndpoint(
            access_policy(app),
            app.authenticator.limiter,
            app.keys,
            allowed_clients=auth_clients(app),
            metrics=app.metrics,
        )
        app.stream_auth.add_routes(app.http.app)


def access_policy(app: Application) -> AccessPolicy:
    """Who may publish and read which stream (MediaMTX asks before every session)."""
    from camera_service.auth.stream_access import AccessPolicy

    keys, jwt = app.keys, app.jwt

    def verify(credential: str) -> Identity:  # no I/O: the endpoint refreshed the keys
        if looks_like_api_key(credential):
            return keys.verify(credential, refresh=False)
        return jwt.verify(credential)

    return AccessPolicy(
        credentials=app.mtx_credentials,
        tokens=app.stream_tokens,
        verify=verify,
        key_active=lambda key_id: keys.is_active(key_id, refresh=False),
        known_path=lambda name: app.cameras.get(name) is not None,
    )


def auth_clients(app: Application) -> list[str]:
    """The addresses MediaMTX asks from: the configured ones and the API URL's host."""
    from camera_service.auth.stream_access import is_ip_address

    cfg = app.config.mediamtx
    api_host = urlsplit(cfg.api_url).hostname or ""
    return [*cfg.auth_clients, *([api_host] if is_ip_address(api_host) else [])]


def kick_revoked_sessions(app: Application) -> None:
    """MediaMTX checks credentials at session start only: close the sessions opened
    with an API key that has been revoked since (the key store was just refreshed)."""
    if app.stream_auth is None:
        return
    revoked = app.stream_auth.ledger.take_revoked(
        lambda key_id: app.keys.is_active(key_id, refresh=False)
    )
    for protocol, session_id in revoked:
        app._spawn(app.mediamtx.kick(protocol, session_id))
