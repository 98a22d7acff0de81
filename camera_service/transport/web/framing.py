"""Response heads and body framing for HTTP/1.1 (RFC 9112 §6). No I/O.

h11 parses the requests; responses are written here, which costs a third of what going
through h11's sending side did (bench figures in the commit introducing this). The rules
are h11's: a response with `Content-Length` sends exactly that many bytes; one without it
is chunked to an HTTP/1.1 peer and close-delimited to an HTTP/1.0 one; HEAD answers and
204/304 carry no body (a HEAD answer keeps the headers a GET would get); the connection
closes after the response when the peer asked for it, spoke HTTP/1.0, the body is
close-delimited, or the response says `Connection: close`.
"""

from __future__ import annotations

import re
import time
from email.utils import formatdate
from enum import Enum

_UNSAFE = re.compile("[\r\n\0]")  # never in a response head


class Mode(Enum):
    LENGTH = "length"
    CHUNKED = "chunked"
    CLOSE = "close"  # the body ends when the connection closes
    NONE = "none"  # no body (HEAD, 204, 304)


class FramingError(Exception):
    """The handler's body did not match its own Content-Length."""


class Framing:
    __slots__ = ("close", "head", "left", "mode")

    def __init__(self, head: bytes, mode: Mode, left: int, close: bool) -> None:
        self.head = head
        self.mode = mode
        self.left = left  # LENGTH: bytes still owed
        self.close = close

    def body(self, data: bytes) -> list[bytes]:
        """What goes on the wire for this piece of the body."""
        mode = self.mode
        if mode is Mode.LENGTH:
            self.count(len(data))
            return [data]
        if mode is Mode.CHUNKED:
            return [b"%x\r\n" % len(data), data, b"\r\n"] if data else []
        if mode is Mode.CLOSE:
            return [data]
        return []

    def count(self, size: int) -> None:
        """`size` body bytes go out past `body()` (sendfile); LENGTH framing only."""
        if self.mode is not Mode.LENGTH:
            return
        if size > self.left:
            raise FramingError(f"body longer than its Content-Length (by {size - self.left})")
        self.left -= size

    def end(self) -> bytes:
        if self.mode is Mode.CHUNKED:
            return b"0\r\n\r\n"
        if self.mode is Mode.LENGTH and self.left:
            raise FramingError(f"body {self.left} bytes shorter than its Content-Length")
        return b""


def keeps_alive(http_version: str, connection: str | None) -> bool:
    """Whether the peer lets the connection carry another request after this one."""
    if http_version != "1.1":
        return False
    return not (connection and "close" in connection.lower())


def response_head(
    status: int,
    reason: str,
    pairs: list[tuple[str, str]],
    *,
    method: str,
    http11: bool,
    keep_alive: bool,
) -> Framing:
    """The head for `pairs` (name, value) and how the body that follows is framed."""
    if _UNSAFE.search("".join([name + value for name, value in pairs])):
        raise ValueError("response header with a control character")
    lowered = {name.lower(): value for name, value in pairs}
    no_body = method == "HEAD" or status in (204, 304) or status < 200
    length = lowered.get("content-length")
    extra: list[tuple[str, str]] = []
    if length is not None:
        mode, left = Mode.LENGTH, int(length)
    elif http11:
        mode, left = Mode.CHUNKED, 0
        if status not in (204, 304):
            extra.append(("Transfer-Encoding", "chunked"))
    else:
        mode, left = Mode.CLOSE, 0
    if no_body:
        mode, left = Mode.NONE, 0
    close = not keep_alive or mode is Mode.CLOSE
    connection = lowered.get("connection")
    if connection is not None and "close" in connection.lower():
        close = True
    elif close:
        extra.append(("Connection", "close"))
    lines = [f"HTTP/1.1 {status} {reason}\r\n"]
    lines += [f"{name}: {value}\r\n" for name, value in pairs]
    lines += [f"{name}: {value}\r\n" for name, value in extra]
    lines.append("\r\n")
    return Framing("".join(lines).encode("latin-1"), mode, left, close)


_date_cache: tuple[int, str] = (-1, "")


def http_date() -> str:
    """The `Date` header value, formatted once a second."""
    global _date_cache
    second = int(time.time())
    if _date_cache[0] != second:
        _date_cache = (second, formatdate(second, usegmt=True))
    return _date_cache[1]
