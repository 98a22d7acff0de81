"""Signed download links for files on the 8003 server."""

from __future__ import annotations

import hashlib
import hmac

from camera_service.storage.tokens import download_url, make_download_token


def derive_download_secret(master: bytes) -> bytes:
    """A key of its own for download tokens, so they can never pass as JWTs or vice versa."""
    return hmac.new(master, b"camera-service download tokens v1", hashlib.sha256).digest()


def host_without_port(host: str) -> str:
    """`example:8002` → `example`; `[::1]:8002` → `[::1]`; `[::1]` stays."""
    if host.startswith("["):
        return host[: host.index("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class DownloadLinks:
    def __init__(self, secret: bytes, ttl_s: float, http_port: int, public_url: str | None) -> None:
        self.secret = secret
        self.ttl_s = ttl_s
        self.http_port = http_port
        self.public_url = public_url.rstrip("/") if public_url else None

    def base_url(self, host_hint: str | None) -> str:
        """`http.public_url` when set, else the host the client reached the API on."""
        if self.public_url:
            return self.public_url
        return f"http://{host_without_port(host_hint or '127.0.0.1')}:{self.http_port}"

    def url(self, kind: str, filename: str, host_hint: str | None = None) -> str:
        token = make_download_token(self.secret, kind, filename, ttl_s=int(self.ttl_s))
        return download_url(self.base_url(host_hint), kind, filename, token)
