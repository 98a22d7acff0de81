"""Plain URLs for other tools: signed snapshot and MJPEG URLs of a camera."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

from pydantic import Field

from camera_service.auth.roles import Role
from camera_service.auth.url_tokens import MAX_TTL_S, make_camera_token
from camera_service.cameras.model import CAMERA_ID_PATTERN
from camera_service.cameras.registry import CameraRegistry
from camera_service.rpc.methods.cameras import camera_or_error
from camera_service.rpc.registry import Params, Registry, Result
from camera_service.rpc.session import CallContext


class CameraUrlsParams(Params):
    device: str = Field(..., pattern=CAMERA_ID_PATTERN, description="Camera id, e.g. camera0")
    ttl: int | None = Field(
        None,
        ge=60,
        le=MAX_TTL_S,
        description="Lifetime of the URLs' token in seconds (default http.download_token_ttl)",
    )


class CameraUrlsResult(Result):
    device: str
    snapshot_url: str
    mjpeg_url: str
    expires_at: str


@dataclass
class IntegrationDeps:
    cameras: CameraRegistry
    secret: bytes
    default_ttl: float
    base_url: Callable[[str | None], str]


def camera_urls(base: str, device: str, token: str) -> tuple[str, str]:
    prefix = f"{base.rstrip('/')}/cameras/{quote(device, safe='')}"
    query = f"?token={quote(token, safe='')}"
    return f"{prefix}/snapshot.jpg{query}", f"{prefix}/stream.mjpg{query}"


def register(registry: Registry, deps: IntegrationDeps) -> None:
    @registry.method(
        "get_camera_urls", params=CameraUrlsParams, result=CameraUrlsResult, role=Role.VIEWER
    )
    async def get_camera_urls(ctx: CallContext, params: CameraUrlsParams) -> CameraUrlsResult:
        """Signed snapshot.jpg and stream.mjpg URLs of a camera, to paste into other tools.

        The token in the URLs opens that camera's two URLs only, until `expires_at` (never
        later than the caller's JWT expires)."""
        camera_or_error(deps.cameras, params.device)
        ttl = params.ttl if params.ttl is not None else int(deps.default_ttl)
        identity = ctx.identity
        if identity is not None and identity.expires_at is not None:
            # No credential outlives the one that made it (as stream tokens): a JWT's URLs
            # stop working when the JWT expires; API keys (no expiry) get the ttl asked for.
            ttl = max(1, min(ttl, int(identity.expires_at - time.time())))
        token = make_camera_token(deps.secret, params.device, ttl)
        expiry = int(token.split(".")[1])
        snapshot, mjpeg = camera_urls(deps.base_url(ctx.session.host), params.device, token)
        expires = datetime.fromtimestamp(expiry, UTC).isoformat().replace("+00:00", "Z")
        return CameraUrlsResult(
            device=params.device, snapshot_url=snapshot, mjpeg_url=mjpeg, expires_at=expires
        )
