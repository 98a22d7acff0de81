"""Plain camera URLs on 8003 for tools that want them (Home Assistant, OctoPrint, dashboards).

``GET /cameras/{device}/snapshot.jpg``: a current JPEG, no file stored.
``GET /cameras/{device}/stream.mjpg``: ``multipart/x-mixed-replace`` MJPEG from the camera's
single live-frame reader (shared by every viewer).

Auth (viewer or higher): ``Authorization: Bearer <JWT or API key>``, ``X-API-Key``, or a
``token`` query holding a signed camera URL token (``get_camera_urls``) or a JWT. API keys are
refused in the query: they never expire, and URLs end up in logs and browser histories.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable

from camera_service.auth.api_keys import looks_like_api_key
from camera_service.auth.identity import AuthError
from camera_service.auth.service import Authenticator
from camera_service.auth.url_tokens import (
    UrlTokenError,
    looks_like_camera_token,
    verify_camera_token,
)
from camera_service.cameras.model import CAMERA_ID_PATTERN
from camera_service.cameras.registry import CameraRegistry
from camera_service.logging import audit
from camera_service.media.frames import FrameError, FrameHub, TooManyViewers, Viewer
from camera_service.transport import web
from camera_service.transport.http_auth import record_failure, refuse_if_limited

log = logging.getLogger(__name__)

BOUNDARY = "frame"
_CAMERA_ID = re.compile(CAMERA_ID_PATTERN)


class CameraHttp:
    def __init__(
        self,
        cameras: CameraRegistry,
        frames: FrameHub,
        authenticator: Authenticator,
        url_secret: bytes,
        *,
        snapshot_timeout: float = 10.0,
        frame_timeout: float = 10.0,
        write_timeout: float = 30.0,
        on_snapshot: Callable[[str], None] = lambda device: None,
    ) -> None:
        self.cameras = cameras
        self.frames = frames
        self.auth = authenticator
        self.secret = url_secret
        self.snapshot_timeout = snapshot_timeout
        self.frame_timeout = frame_timeout
        self.write_timeout = write_timeout
        self.on_snapshot = on_snapshot

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/cameras/{device}/snapshot.jpg", self.snapshot)
        app.router.add_get("/cameras/{device}/stream.mjpg", self.mjpeg)

    # -- checks ------------------------------------------------------------------------------

    def _authorize(self, request: web.Request, device: str) -> None:
        """Refused credentials count toward the per-address failed-authentication limit
        (429 once over it) and are audited, as for downloads and ``authenticate``."""
        remote = request.remote or "unknown"
        refuse_if_limited(self.auth, remote, "camera URL refused", camera=device)
        token = request.query.get("token")
        if token is not None:
            self._check_query_token(token, device, remote)
            return
        header = request.headers.get("Authorization", "")
        credential = header[7:].strip() if header.lower().startswith("bearer ") else None
        credential = credential or request.headers.get("X-API-Key") or None
        if credential is None:
            raise web.HTTPUnauthorized(
                text="credentials required", headers={"WWW-Authenticate": "Bearer"}
            )
        try:
            self.auth.verify(credential)  # every role is at least viewer
        except AuthError as exc:
            record_failure(self.auth, remote, exc.reason, camera=device)
            raise web.HTTPUnauthorized(text=exc.reason) from None

    def _check_query_token(self, token: str, device: str, remote: str) -> None:
        if looks_like_camera_token(token):
            try:
                verify_camera_token(self.secret, token, device)
            except UrlTokenError as exc:
                if str(exc) == "camera token expired":  # a forgotten URL, not a guess
                    audit("camera URL refused", remote=remote, reason=str(exc), camera=device)
                else:
                    record_failure(self.auth, remote, str(exc), camera=device)
                raise web.HTTPUnauthorized(text=str(exc)) from None
            return
        if looks_like_api_key(token):
            raise web.HTTPUnauthorized(
                text="API keys are not accepted in URLs: use the X-API-Key header "
                "or a camera token from get_camera_urls"
            )
        try:
            self.auth.verify(token)
        except AuthError as exc:
            record_failure(self.auth, remote, exc.reason, camera=device)
            raise web.HTTPUnauthorized(text=exc.reason) from None

    def _camera(self, request: web.Request) -> str:
        device = request.match_info["device"]
        if not _CAMERA_ID.fullmatch(device):
            raise web.HTTPBadRequest(text="invalid camera id")
        self._authorize(request, device)
        camera = self.cameras.get(device)
        if camera is None:
            raise web.HTTPNotFound(text=f"no camera {device}")
        if not camera.connected:
            raise web.HTTPServiceUnavailable(
                text=f"camera {device} is {camera.status.value}", headers={"Retry-After": "5"}
            )
        return device

    # -- handlers ----------------------------------------------------------------------------

    async def snapshot(self, request: web.Request) -> web.Response:
        device = self._camera(request)
        try:
            frame = await self.frames.snapshot(device, self.snapshot_timeout)
        except FrameError as exc:
            log.warning("snapshot URL of %s failed: %s (%s)", device, exc.message, exc.detail)
            raise web.HTTPServiceUnavailable(
                text=f"{exc.message}: {exc.detail}", headers={"Retry-After": "2"}
            ) from None
        self.on_snapshot(device)
        return web.Response(
            body=frame, headers={"Content-Type": "image/jpeg", "Cache-Control": "no-store"}
        )

    async def mjpeg(self, request: web.Request) -> web.StreamResponse:
        device = self._camera(request)
        response = web.StreamResponse(
            headers={
                "Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        try:
            async with self.frames.viewer(device) as viewer:
                try:
                    frame = await viewer.next(self.snapshot_timeout)
                except FrameError as exc:
                    raise web.HTTPServiceUnavailable(
                        text=f"{exc.message}: {exc.detail}", headers={"Retry-After": "2"}
                    ) from None
                await response.prepare(request)
                if request.method != "HEAD":  # (a HEAD answer has no body to stream)
                    await self._stream(response, viewer, frame, device)
        except TooManyViewers as exc:
            raise web.HTTPServiceUnavailable(
                text=f"{exc.message} ({exc.detail})", headers={"Retry-After": "10"}
            ) from None
        except FrameError as exc:  # e.g. shutting down
            raise web.HTTPServiceUnavailable(text=exc.message) from None
        except (ConnectionResetError, TimeoutError):
            log.info("MJPEG viewer of %s went away or stalled", device)
        return response

    async def _stream(
        self, response: web.StreamResponse, viewer: Viewer, frame: bytes, device: str
    ) -> None:
        while True:
            head = (
                f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(frame)}\r\n\r\n"
            )
            # A viewer that cannot take a frame within write_timeout is dropped; one that is
            # merely slow gets the newest frame next (the ones in between are skipped).
            await asyncio.wait_for(
                response.write(head.encode() + frame + b"\r\n"), self.write_timeout
            )
            try:
                frame = await viewer.next(self.frame_timeout)
            except FrameError as exc:
                log.info("MJPEG of %s ended: %s (%s)", device, exc.message, exc.detail)
                return
