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

Every failure is an :class:`HTTPError`; nothing else escapes (bar cancellation).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Self, cast
from urllib.parse import urlsplit

import h11

#: Largest response body accepted (bytes); MediaMTX's largest answers (path lists of a
#: thousand paths) are well below 1 MiB.
MAX_BODY_BYTES = 16 * 1024 * 1024
#: Largest response head (status line and headers, bytes).
MAX_HEAD_BYTES = 32 * 1024
#: Idle keep-alive connections kept per client.
MAX_IDLE_CONNECTIONS = 4
#: Reading from the socket pauses while this many received bytes wait to be parsed, and
#: resumes below :data:`READ_LOW_WATER`.
READ_HIGH_WATER = 256 * 1024
READ_LOW_WATER = 64 * 1024
#: Methods retried after a connection closed with the request written but no answer.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
DEFAULT_PORTS = {"http": 80, "https": 443}
#: Request heads without a body kept for reuse per client (the same polls, again and again).
REQUEST_CACHE_SIZE = 32


class HTTPError(Exception):
    """The exchange failed: no (complete, acceptable) response."""


class ConnectFailed(HTTPError):
    """The TCP (or TLS) connection could not be opened."""


class ConnectionLost(HTTPError):
    """The connection closed before the response was complete.

    ``sent``: some of the request had been written; ``received``: some of the response had
    arrived. Only a loss with nothing received is worth a retry.
    """

    def __init__(self, message: str, *, sent: bool, received: bool) -> None:
        super().__init__(message)
        self.sent = sent
        self.received = received


class ProtocolViolation(HTTPError):
    """The server's answer is not HTTP/1.1 (bad status line, head too large, bad framing)."""


class BodyTooLarge(HTTPError):
    """The response body is longer than the client's ``max_body``."""


class RequestTimeout(HTTPError, TimeoutError):
    """The request's deadline passed; the message names the phase."""


class ClientClosed(HTTPError):
    """The :class:`HTTPClient` was closed."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    reason: str
    #: Header names in lower case, values as sent, in order.
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), else None."""
        wanted = name.lower()
        for key, value in self.headers:
            if key == wanted:
                return value
        return None


class _Connection(asyncio.Protocol):
    """One TCP connection: the socket side of an ``h11.Connection`` in the CLIENT role."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_head: int) -> None:
        self._loop = loop
        self._max_head = max_head
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_head)
        self.transport: asyncio.Transport | None = None
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._reading_paused = False
        self._eof = False
        self._eof_fed = False
        self.lost = False
        self._lost_reason: str | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._writing_paused = False
        #: Resolved when the connection has closed.
        self.closed: asyncio.Future[None] = loop.create_future()
        self.busy = False
        self.sent = False
        self.received = False
        #: Called once when the connection closes while idle (the pool forgets it).
        self.on_idle_lost: Callable[[_Connection], None] | None = None

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self.busy:
            # Nothing was asked: a server talking out of turn is not reusable.
            self.close()
            return
        self.received = True
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered >= READ_HIGH_WATER and not self._reading_paused:
            self._reading_paused = True
            assert self.transport is not None
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False  # close the transport; HTTP/1.1 has no use for a half-closed socket

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._eof = True
        if exc is not None:
            self._lost_reason = f"{exc.__class__.__name__}: {exc}"
        self._wake()
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)
        if not self.closed.done():
            self.closed.set_result(None)
        callback, self.on_idle_lost = self.on_idle_lost, None
        if callback is not None and not self.busy:
            callback(self)

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    # -- state ---------------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        """Open, not told to close, and ready for a new request."""
        return (
            not self.lost
            and not self._eof
            and self.transport is not None
            and not self.transport.is_closing()
            and self.h11.our_state is h11.IDLE
            and self.h11.their_state is h11.IDLE
        )

    @property
    def has_unread(self) -> bool:
        """Bytes received beyond the response just read (a server talking out of turn)."""
        return bool(self._chunks) or bool(self.h11.trailing_data[0])

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def lost_error(self, what: str) -> ConnectionLost:
        reason = f" ({self._lost_reason})" if self._lost_reason else ""
        return ConnectionLost(
            f"the server closed the connection {what}{reason}",
            sent=self.sent,
            received=self.received,
        )

    # -- one exchange --------------------------------------------------------------------

    async def send(self, data: bytes) -> None:
        """Write the whole request; wait while the transport's buffer is full."""
        if self.lost or self.transport is None or self.transport.is_closing():
            raise self.lost_error("before the request was written")
        self.sent = True
        self.transport.write(data)
        while self._writing_paused and not self.lost:
            self._drain_waiter = self._loop.create_future()
            await self._drain_waiter
        if self.lost:
            raise self.lost_error("while the request was written")

    async def next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        """The next h11 event of the response, reading from the socket as needed."""
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as exc:
                if self._eof_fed and not self._chunks:
                    raise self.lost_error("before the response was complete") from exc
                if len(self.h11.trailing_data[0]) > self._max_head:
                    raise ProtocolViolation(
                        f"response head larger than {self._max_head} bytes"
                    ) from exc
                raise ProtocolViolation(f"malformed response: {exc}") from exc
            if event is not h11.NEED_DATA:
                return event
            if self._chunks:
                data = self._chunks.popleft()
                self._buffered -= len(data)
                if self._reading_paused and self._buffered <= READ_LOW_WATER and not self.lost:
                    self._reading_paused = False
                    assert self.transport is not None
                    self.transport.resume_reading()
                self.h11.receive_data(data)
            elif self._eof and not self._eof_fed:
                self._eof_fed = True
                self.h11.receive_data(b"")
            else:
                self._waiter = self._loop.create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None


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
        self._idle: collections.deque[_Connection] = collections.deque()
        self._open: set[_Connection] = set()
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
            response = await self._read_response(conn, phase)
        except BaseException:
            conn.abort()
            self._open.discard(conn)
            raise
        self._release(conn)
        return response

    async def _read_response(self, conn: _Connection, phase: list[str]) -> Response:
        while True:
            event = await conn.next_event()
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                break
            if isinstance(event, h11.ConnectionClosed):
                raise conn.lost_error("before the response head")
            raise ProtocolViolation(f"unexpected {event!r} before the response head")
        headers = tuple(
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in event.headers
        )
        length = next((int(v) for k, v in headers if k == "content-length"), None)
        if length is not None and length > self.max_body:
            raise BodyTooLarge(
                f"response body of {length} bytes is over the limit of {self.max_body} bytes"
            )
        phase[0] = _PHASE_BODY
        parts: list[bytes] = []
        size = 0
        while True:
            item = await conn.next_event()
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
            headers=headers,
            body=b"".join(parts),
        )

    async def _connect(self) -> _Connection:
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
                lambda: _Connection(loop, self.max_head), self.host, self.port, ssl=context
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

    def _take_idle(self) -> _Connection | None:
        while self._idle:
            conn = self._idle.pop()  # the most recently used: the least likely timed out
            conn.on_idle_lost = None
            if conn.usable:
                return conn
            conn.abort()
            self._open.discard(conn)
        return None

    def _release(self, conn: _Connection) -> None:
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

    def _forget(self, conn: _Connection) -> None:
        """An idle connection closed (server's idle timeout): out of the pool."""
        with contextlib.suppress(ValueError):
            self._idle.remove(conn)
        self._open.discard(conn)
