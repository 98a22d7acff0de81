"""File downloads on 8003: `/files/recordings/{name}` and `/files/snapshots/{name}`.

Auth: `Authorization: Bearer <JWT or API key>`, `X-API-Key`, or the signed `token` query
that `download_url` carries (one file, short-lived). Range requests, Content-Disposition.
Names are resolved by the FileStore, which refuses anything outside its directory.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from camera_service.auth.identity import AuthError
from camera_service.auth.service import Authenticator
from camera_service.logging import audit
from camera_service.storage import errors as storage_errors
from camera_service.storage import names as storage_names
from camera_service.storage.files import FileStore
from camera_service.storage.tokens import TokenExpired, TokenInvalid, verify_download_token
from camera_service.transport import web
from camera_service.transport.http_auth import record_failure, refuse_if_limited

log = logging.getLogger(__name__)
KINDS = ("recordings", "snapshots")
CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".mkv": "video/x-matroska",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
}


class Downloads:
    def __init__(self, files: FileStore, authenticator: Authenticator, secret: bytes) -> None:
        self.files = files
        self.auth = authenticator
        self.secret = secret
        # More file kinds (continuous segments): name → resolved path, or storage NotFound.
        self.resolvers: dict[str, Callable[[str], Awaitable[Path]]] = {}
        self._serving: Counter[Path] = Counter()

    def in_use(self) -> set[Path]:
        """Files being sent right now (never deleted meanwhile)."""
        return set(self._serving)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/files/{kind}/{name}", self.download)

    def _authorize(self, request: web.Request, kind: str, name: str) -> None:
        """Failed attempts count toward the same per-address limit as WebSocket
        authentication and are audited; an address over it gets 429 until the window passes."""
        remote = request.remote or "unknown"
        refuse_if_limited(self.auth, remote, "download refused", file=f"{kind}/{name}")
        token = request.query.get("token")
        if token is not None:
            try:
                verify_download_token(self.secret, token, kind, name)
            except TokenExpired:
                audit("download refused", remote=remote, reason="link expired", file=name)
                raise web.HTTPUnauthorized(text="download link expired") from None
            except TokenInvalid:
                self._failed(remote, "download token not valid for this file", name)
                raise web.HTTPForbidden(text="download token not valid for this file") from None
            return
        credential = _header_credential(request)
        if credential is None:
            raise web.HTTPUnauthorized(
                text="credentials required", headers={"WWW-Authenticate": "Bearer"}
            )
        try:
            self.auth.verify(credential)
        except AuthError as exc:
            self._failed(remote, exc.reason, name)
            raise web.HTTPUnauthorized(text=exc.reason) from None

    def _failed(self, remote: str, reason: str, name: str) -> None:
        record_failure(self.auth, remote, reason, file=name)

    async def download(self, request: web.Request) -> web.StreamResponse:
        kind = request.match_info["kind"]
        name = request.match_info["name"]
        if kind not in KINDS and kind not in self.resolvers:
            raise web.HTTPNotFound(text="unknown file kind")
        try:
            storage_names.validate_filename(name)
        except storage_errors.InvalidFilename as exc:
            raise web.HTTPBadRequest(text=f"invalid file name: {exc.rule}") from None
        self._authorize(request, kind, name)
        try:
            resolver = self.resolvers.get(kind)
            if resolver is not None:
                path = await resolver(name)
            else:
                path = await self.files.path_for(kind, name)  # type: ignore[arg-type]
        except storage_errors.InvalidFilename:
            raise web.HTTPBadRequest(text="invalid file name") from None
        except storage_errors.NotFound:
            raise web.HTTPNotFound(text="no such file") from None
        content_type = CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
        return _TrackedFileResponse(
            path,
            self._serving,
            headers={
                "Content-Type": content_type,
                "Content-Disposition": f'attachment; filename="{name}"',
                "Cache-Control": "private, no-store",
            },
        )


class _TrackedFileResponse(web.FileResponse):
    """A FileResponse that counts itself in ``serving`` while it sends the file."""

    def __init__(self, path: Path, serving: Counter[Path], **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self._tracked_path = path
        self._tracked_in = serving

    async def prepare(self, request: web.Request) -> None:
        serving, path = self._tracked_in, self._tracked_path
        serving[path] += 1
        try:
            await super().prepare(request)
        finally:
            serving[path] -= 1
            if serving[path] <= 0:
                del serving[path]


def _header_credential(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return request.headers.get("X-API-Key") or None
