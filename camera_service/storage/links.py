"""Signed download links for files on the 8003 server."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

from camera_service.storage.tokens import download_url, make_download_token


def derive_download_secret(master: bytes) -> bytes:
    """A key of its own for download tokens, so they can never pass as JWTs or vice versa."""
    return hmac.new(master, b"camera-service download tokens v1", hashlib.sha256).digest()


def link_host(address: str | None) -> str:
    """A socket address (IPv4, IPv6, IPv4-mapped) as the host part of a URL."""
    if not address:
        return "127.0.0.1"
    if address.startswith("::ffff:") and "." in address:
        return address[len("::ffff:") :]
    if ":" in address and not address.startswith("["):
        return f"[{address.split('%', 1)[0]}]"
    return address


class DownloadLinks:
    """Links never use the client's Host header (anyone can send any Host): they use
    `http.public_url` when set, else the address the recipient's own connection reached."""

    def __init__(self, secret: bytes, ttl_s: float, http_port: int, public_url: str | None) -> None:
        self.secret = secret
        self.ttl_s = ttl_s
        self.http_port = http_port
        self.public_url = public_url.rstrip("/") if public_url else None

    def base_url(self, local_address: str | None) -> str:
        """`http.public_url` when set, else the server address the client connected to."""
        if self.public_url:
            return self.public_url
        return f"http://{link_host(local_address)}:{self.http_port}"

    def url(self, kind: str, filename: str, local_address: str | None = None) -> str:
        token = make_download_token(self.secret, kind, filename, ttl_s=int(self.ttl_s))
        return download_url(self.base_url(local_address), kind, filename, token)

    def personal_url(self, kind: str, filename: str) -> Callable[[Any], dict[str, str]]:
        """For `Event.personal`: each recipient gets a `download_url` for its own address."""
        made: dict[str | None, dict[str, str]] = {}

        def for_recipient(subscriber: Any) -> dict[str, str]:
            address = getattr(subscriber, "host", None)
            if address not in made:
                made[address] = {"download_url": self.url(kind, filename, address)}
            return made[address]

        return for_recipient
