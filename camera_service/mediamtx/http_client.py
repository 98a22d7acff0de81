"""A small asyncio HTTP/1.1 client on h11 (python-hyper's Sans-I/O state machine).

It is what :class:`camera_service.mediamtx.client.MediaMTXClient` sends its requests with:
one origin (``scheme://host:port``) per :class:`HTTPClient`, small JSON requests and answers.

* **Keep-alive.** A finished connection goes back to a pool of at most ``max_idle`` idle
  connections (the rest are closed). An idle connection the server closes leaves the pool at
  once; one that turns out dead when used is replaced as below.
* **One retry on a fresh connection** when a connection closes before a single byte of the
  response arrived (the server timed the idle connection out just as the request went, or
  it went away): for GET/HEAD/PUT/DELETE/OPTIONS always, for POST/PATCH only if nothing of
  the request had been written (the server may have acted on it otherwise).
* **Deadlines.** ``timeout`` bounds the whole request: connect, write, response head, body,
  and the retry; :class:`RequestTimeout` names the phase it expired in.
* **Limits in bytes.** A response head is at most ``max_head`` bytes (h11's
  ``max_incomplete_event_size``), a body at most ``max_body`` (:data:`MAX_BODY_BYTES`):
  a larger ``Content-Length`` is refused before its body is read, a longer chunked or
  close-delimited body as soon as it passes the limit, and the connection is dropped. Reading
  from the socket pauses while :data:`READ_HIGH_WATER` bytes wait to be parsed.
* Content-Length, chunked and close-delimited bodies; ``Connection: close`` (and HTTP/1.0)
  from the server is honoured: that connection is not reused.

Every failure is an :class:`HTTPError` (:mod:`camera_service.mediamtx.http_errors`); nothing
else escapes (bar cancellation). The connection protocol is
:mod:`camera_service.mediamtx.http_connection`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

import h11

from camera_service.mediamtx.http_connection import READ_HIGH_WATER, Connection
from camera_service.mediamtx.http_errors import (
    BodyTooLarge,
    ClientClosed,
    ConnectFailed,
    ConnectionLost,
    HTTPError,
    ProtocolViolation,
    RequestTimeout,
)

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_HEAD_BYTES",
    "MAX_IDLE_CONNECTIONS",
    "READ_HIGH_WATER",
    "BodyTooLarge",
    "ClientClosed",
    "ConnectFailed",
    "ConnectionLost",
    "HTTPClient",
    "HTTPError",
    "ProtocolViolation",
    "RequestTimeout",
    "Response",
]

#: Largest response body accepted (bytes); MediaMTX's largest answers (path lists of a
#: thousand paths) are well below 1 MiB.
MAX_BODY_BYTES = 16 * 1024 * 1024
#: Largest response head (status line and headers, bytes).
MAX_HEAD_BYTES = 32 * 1024
#: Idle keep-alive connections kept per client.
MAX_IDLE_CONNECTIONS = 4
#: Methods retried after a connection closed with the request written but no answer.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
DEFAULT_PORTS = {"http": 80, "https": 443}
#: Request heads without a body kept for reuse per client (the same polls, again and again).
REQUEST_CACHE_SIZE = 32


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    reason: str
    #: As h11 parsed them: names in lower case, values as sent, in order (bytes).
    headers: Sequence[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), else None."""
        wanted = name.lower().encode("latin-1")
        for key, value in self.headers:
            if key == wanted:
                return value.decode("latin-1")
        return None


_PHASE_CONNECT = "connecting"
_PHASE_WRITE = "writing the request"
_PHASE_HEAD = "waiting for the response head"
_PHASE_BODY = "reading the response body"


class HTTPClient:
    """Requests to one origin over a bounded pool of keep-alive connections.

    ``base_url``: ``http://host[:port]`` or ``https://...`` (any path in it is ignored:
    requests name their whole target). Connections are opened inside the running loop when
    a request needs one; :meth:`close` closes them all, and later requests raise
    :class:`ClientClosed`.
    """

    def __init__(
        self,
        base_url: str,
        *,
        max_idle: int = MAX_IDLE_CONNECTIONS,
        max_body: int = MAX_BODY_BYTES,
        max_head: int = MAX_HEAD_BYTES,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in DEFAULT_PORTS:
            raise ValueError(f"unsupported URL scheme {parts.scheme!r} (http or https)")
        if not parts.hostname:
            raise ValueError(f"no host in URL {base_url!r}")
        if max_idle < 0 or max_body < 0 or max_head < 1:
            raise ValueError("max_idle and max_body must be >= 0, max_head >= 1")
        self.host = parts.hostname
        self.port = parts.port or DEFAULT_PORTS[parts.scheme]
        self._tls = parts.scheme == "https"
        self._ssl_context = ssl_context
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = self.port == DEFAULT_PORTS[parts.scheme]
        self._host_header = host if default else f"{host}:{self.port}"
        self.max_idle = max_idle
        self.max_body = max_body
        self.max_head = max_head
        self._idle: collections.deque[Connection] = collections.deque()
        self._open: set[Connection] = set()
        self._events: dict[tuple[str, str, tuple[tuple[str, str], ...]], h11.Request] = {}
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def idle_connections(self) -> int:
        """Connections waiting in the pool."""
        return len(self._idle)

    @property
    def open_connections(self) -> int:
        """Connections open (idle or busy)."""
        return len(self._open)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close every connection (idempotent); requests in flight fail with ConnectionLost."""
        self._closed = True
        self._idle.clear()
        for conn in list(self._open):
            conn.abort()
        self._open.clear()

    async def request(
        self,
        method: str,
        target: str,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes | None = None,
        timeout: float,
    ) -> Response:
        """Send ``method target`` and return the complete response (any status).

        ``target`` is the request target as sent (``/v3/paths/list?page=0``), already
        percent-encoded. ``timeout`` (seconds) bounds the whole request.
        """
        if self._closed:
            raise ClientClosed("the HTTP client is closed")
        method = method.upper()
        event = self._request_event(method, target, tuple(headers), body)
        phase = [_PHASE_CONNECT]
        try:
            async with asyncio.timeout(timeout):
                try:
                    return await self._exchange(event, body, phase, pooled=True)
                except ConnectionLost as exc:
                    if exc.received or (exc.sent and method not in IDEMPOTENT_METHODS):
                        raise
                # Once more, on a connection of its own.
                return await self._exchange(event, body, phase, pooled=False)
        except TimeoutError as exc:
            raise RequestTimeout(f"timed out after {timeout:g} s {phase[0]}") from exc

    def _request_event(
        self, method: str, target: str, headers: tuple[tuple[str, str], ...], body: bytes | None
    ) -> h11.Request:
        """The validated request head; those without a body are kept for reuse (h11 events
        are immutable), so a poll of the same URL is validated once."""
        key = (method, target, headers) if body is None else None
        if key is not None and (cached := self._events.get(key)) is not None:
            return cached
        fields = [("Host", self._host_header), *headers]
        if body is not None or method in ("POST", "PUT", "PATCH"):
            fields.append(("Content-Length", str(len(body or b""))))
        try:
            event = h11.Request(method=method, target=target, headers=fields)
        except h11.LocalProtocolError as exc:
            raise HTTPError(f"invalid request: {exc}") from exc
        if key is not None:
            if len(self._events) >= REQUEST_CACHE_SIZE:
                self._events.clear()
            self._events[key] = event
        return event

    async def _exchange(
        self, event: h11.Request, body: bytes | None, phase: list[str], *, pooled: bool
    ) -> Response:
        phase[0] = _PHASE_CONNECT
        conn = self._take_idle() if pooled else None
        if conn is None:
            conn = await self._connect()
        conn.busy = True
        conn.sent = conn.received = False
        try:
            phase[0] = _PHASE_WRITE
            data = conn.h11.send(event)
            if body:
                data += conn.h11.send(h11.Data(data=body))
            data += conn.h11.send(h11.EndOfMessage())
            await conn.send(data)
            phase[0] = _PHASE_HEAD
            response = await self._read_response(conn, phase, head_only=event.method == b"HEAD")
        except BaseException:
            conn.abort()
            self._open.discard(conn)
            raise
        self._release(conn)
        return response

    async def _read_response(
        self, conn: Connection, phase: list[str], *, head_only: bool
    ) -> Response:
        while True:
            event = await conn.next_event()
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                break
            if isinstance(event, h11.ConnectionClosed):
                raise conn.lost_error("before the response head")
            raise ProtocolViolation(f"unexpected {event!r} before the response head")
        # A HEAD answer, 204 and 304 have no body whatever their Content-Length says.
        no_body = head_only or event.status_code in (204, 304)
        length = next((int(v) for k, v in event.headers if k == b"content-length"), None)
        if length is not None and length > self.max_body and not no_body:
            raise BodyTooLarge(
                f"response body of {length} bytes is over the limit of {self.max_body} bytes"
            )
        phase[0] = _PHASE_BODY
        parts: list[bytes] = []
        size = 0
        while True:
            item = conn.poll()
            if item is h11.NEED_DATA:
                await conn.wait_data()
                continue
            if isinstance(item, h11.Data):
                size += len(item.data)
                if size > self.max_body:
                    raise BodyTooLarge(f"response body is over the limit of {self.max_body} bytes")
                parts.append(item.data)
            elif isinstance(item, h11.EndOfMessage):
                break
            elif isinstance(item, h11.ConnectionClosed):
                raise conn.lost_error("before the response body was complete")
            else:
                raise ProtocolViolation(f"unexpected {item!r} in the response body")
        return Response(
            status=event.status_code,
            reason=event.reason.decode("latin-1"),
            headers=event.headers,
            body=parts[0] if len(parts) == 1 else b"".join(parts),
        )

    async def _connect(self) -> Connection:
        if self._closed:
            raise ClientClosed("the HTTP client is closed")
        loop = asyncio.get_running_loop()
        context: ssl.SSLContext | None = None
        if self._tls:
            if self._ssl_context is None:
                self._ssl_context = ssl.create_default_context()
            context = self._ssl_context
        try:
            _, conn = await loop.create_connection(
                lambda: Connection(loop, self.max_head), self.host, self.port, ssl=context
            )
        except OSError as exc:
            if isinstance(exc, TimeoutError):
                raise
            raise ConnectFailed(
                f"cannot connect to {self._host_header}: {exc.__class__.__name__}: {exc}"
            ) from exc
        if self._closed:
            conn.abort()
            raise ClientClosed("the HTTP client is closed")
        self._open.add(conn)
        return conn

    def _take_idle(self) -> Connection | None:
        while self._idle:
            conn = self._idle.pop()  # the most recently used: the least likely timed out
            conn.on_idle_lost = None
            if conn.usable:
                return conn
            conn.abort()
            self._open.discard(conn)
        return None

    def _release(self, conn: Connection) -> None:
        conn.busy = False
        reusable = (
            not self._closed
            and conn.h11.our_state is h11.DONE
            and conn.h11.their_state is h11.DONE
            and not conn.lost
            and len(self._idle) < self.max_idle
        )
        if reusable:
            conn.h11.start_next_cycle()
            reusable = conn.usable and not conn.has_unread
        if not reusable:
            conn.close()
            self._open.discard(conn)
            return
        conn.on_idle_lost = self._forget
        self._idle.append(conn)

    def _forget(self, conn: Connection) -> None:
        """An idle connection closed (server's idle timeout): out of the pool."""
        with contextlib.suppress(ValueError):
            self._idle.remove(conn)
        self._open.discard(conn)
