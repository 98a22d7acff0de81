"""WebSocket transport: handshake checks, one read loop and one writer per connection.

Handshake: wrong path → 404, origin not allowed → 403, over `max_connections` → 503 with
Retry-After. Frames over `max_message_bytes` close with 1009 (websockets enforces `max_size`).
Frames whose methods never await I/O (registry `inline=True`: ping, authenticate, the
in-memory getters) are answered in the read loop itself, so `authenticate` binds before the
next frame is read; the others run as tasks, up to `max_inflight` per connection. Outgoing
text is written at once or queued per session; a full queue closes the connection with 1013.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import ssl
import uuid
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from camera_service.config import ServerConfig
from camera_service.events import EventBus
from camera_service.metrics import Metrics
from camera_service.rpc.dispatch import Dispatcher
from camera_service.rpc.errors import InternalError
from camera_service.rpc.protocol import Invalid, Parsed, encode, error_response
from camera_service.rpc.session import Session, TokenBucket

log = logging.getLogger(__name__)

CLOSE_TRY_AGAIN_LATER = 1013
WRITE_LIMIT = 1 << 16  # bytes buffered in the transport before direct writes defer to the queue


def direct_writer(connection: ServerConnection) -> Callable[[str], bool]:
    """Write one text frame synchronously when the socket can take it.

    Uses the Sans-I/O protocol object of websockets (frame into its buffer, then
    `send_data()` to the transport): the same two steps `send()` takes, minus the awaiting.
    Only called when the session's writer task is idle, so frames never interleave."""
    protocol = connection.protocol

    def write(text: str) -> bool:
        transport = connection.transport
        if protocol.state is not State.OPEN or transport.get_write_buffer_size() > WRITE_LIMIT:
            return False
        protocol.send_text(text.encode())
        connection.send_data()
        return True

    return write


def _remote(connection: ServerConnection) -> str:
    address = connection.remote_address
    return str(address[0]) if address else "unknown"


def _local(connection: ServerConnection) -> str | None:
    """The server address the client reached (download links point there, not at `Host`)."""
    address = connection.local_address
    return str(address[0]) if address else None


class WebSocketServer:
    def __init__(
        self,
        config: ServerConfig,
        dispatcher: Dispatcher,
        bus: EventBus,
        metrics: Metrics,
        on_session_close: Callable[[Session], None] | None = None,
    ) -> None:
        self.config = config
        self.dispatcher = dispatcher
        self.bus = bus
        self.metrics = metrics
        self.sessions: dict[str, Session] = {}
        self._server: Server | None = None
        self._inflight: set[asyncio.Task[Any]] = set()
        self._closers: set[asyncio.Task[None]] = set()
        self._reserved: set[ServerConnection] = set()
        self._accepting = True
        self._on_session_close = on_session_close

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        cfg = self.config
        self._server = await serve(
            self._handle,
            cfg.host,
            cfg.port,
            process_request=self._process_request,
            max_size=cfg.max_message_bytes,
            ping_interval=cfg.ping_interval,
            ping_timeout=cfg.ping_timeout,
            close_timeout=cfg.close_timeout,
            ssl=self._ssl_context(),
            server_header=None,
            compression=None,
        )

    def _ssl_context(self) -> ssl.SSLContext | None:
        tls = self.config.tls
        if not tls.enabled:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
        return context

    def _open_count(self) -> int:
        """Sessions plus handshakes accepted but not yet running (exact under concurrency)."""
        self._reserved = {c for c in self._reserved if c.protocol.state is State.CONNECTING}
        return len(self.sessions) + len(self._reserved)

    def _reject(
        self, connection: ServerConnection, status: http.HTTPStatus, reason: str, text: str
    ) -> Response:
        self.metrics.handshake_rejected(reason)
        response = connection.respond(status, text + "\n")
        return response

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path != self.config.path:
            return self._reject(connection, http.HTTPStatus.NOT_FOUND, "path", "Not Found")
        if not self._accepting:
            response = self._reject(
                connection, http.HTTPStatus.SERVICE_UNAVAILABLE, "shutdown", "Shutting down"
            )
            return response
        if not self._origin_allowed(request.headers):
            return self._reject(
                connection, http.HTTPStatus.FORBIDDEN, "origin", "Origin not allowed"
            )
        if self._open_count() >= self.config.max_connections:
            response = self._reject(
                connection, http.HTTPStatus.SERVICE_UNAVAILABLE, "capacity", "Too many connections"
            )
            response.headers["Retry-After"] = "5"
            return response
        self._reserved.add(connection)
        return None

    def _origin_allowed(self, headers: Headers) -> bool:
        allowed = self.config.allowed_origins
        if not allowed:
            return True
        origins = headers.get_all("Origin")  # more than one Origin header is refused
        return len(origins) == 1 and origins[0] in allowed

    async def _handle(self, connection: ServerConnection) -> None:
        self._reserved.discard(connection)
        session = self._new_session(connection)
        session.write_now = direct_writer(connection)
        session.host = _local(connection)
        self.sessions[session.session_id] = session
        self.metrics.connection_opened()
        writer = asyncio.create_task(self._write_loop(connection, session))
        try:
            await self._read_loop(connection, session)
        finally:
            writer.cancel()
            self.sessions.pop(session.session_id, None)
            self.bus.drop(session.subscriber_id)
            self.metrics.connection_closed()
            if self._on_session_close:
                self._on_session_close(session)

    def _new_session(self, connection: ServerConnection) -> Session:
        limit = self.config.rate_limit
        bucket = TokenBucket(limit.per_second, limit.burst) if limit.enabled else None

        def overflow(session: Session) -> None:
            log.warning("client too slow, closing", extra={"session": session.session_id})
            closer = asyncio.create_task(connection.close(CLOSE_TRY_AGAIN_LATER, "queue full"))
            self._closers.add(closer)
            closer.add_done_callback(self._closers.discard)

        return Session(_remote(connection), self.config.send_queue_size, bucket, overflow)

    async def _read_loop(self, connection: ServerConnection, session: Session) -> None:
        limiter = asyncio.Semaphore(self.config.max_inflight)
        with contextlib.suppress(ConnectionClosed):
            async for frame in connection:
                parsed = self.dispatcher.parse(frame)
                if self.dispatcher.is_inline(parsed):
                    # No I/O to wait for (and authenticate must bind before the next frame).
                    await self._answer(session, parsed)
                    continue
                await limiter.acquire()
                task = asyncio.create_task(self._answer(session, parsed))
                self._inflight.add(task)
                task.add_done_callback(self._call_finished(limiter))

    def _call_finished(self, limiter: asyncio.Semaphore) -> Callable[[asyncio.Task[Any]], None]:
        def finished(task: asyncio.Task[Any]) -> None:
            self._inflight.discard(task)
            limiter.release()

        return finished

    async def _answer(self, session: Session, parsed: Parsed | Invalid) -> None:
        try:
            response = await self.dispatcher.handle_parsed(session, parsed)
        except Exception:
            # Last line of defence: dispatch answers every error it knows about itself.
            request_id = uuid.uuid4().hex[:16]
            log.exception("failed to answer a frame", extra={"request_id": request_id})
            response = encode(error_response(None, InternalError(request_id)))
        if response is not None:
            session.send(response)

    async def _write_loop(self, connection: ServerConnection, session: Session) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                text = await session.outbox.get()
                session.writer_busy = True
                try:
                    await connection.send(text)
                finally:
                    session.writer_busy = False
                    session.outbox.task_done()

    async def drain_inflight(self, timeout: float) -> None:
        """Wait for calls in progress to finish (bounded)."""
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=timeout)

    async def flush_outboxes(self, timeout: float) -> None:
        """Give writers a bounded chance to send what is queued (e.g. system.shutdown)."""
        waiters = [asyncio.ensure_future(s.outbox.join()) for s in self.sessions.values()]
        if waiters:
            _, pending = await asyncio.wait(waiters, timeout=timeout)
            for waiter in pending:
                waiter.cancel()

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, finish in-flight calls, close every socket with 1001."""
        self._accepting = False
        if self._server is None:
            return
        await self.drain_inflight(timeout)
        await self.flush_outboxes(min(timeout, 1.0))
        self._server.close(close_connections=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), timeout)

    def stop_accepting(self) -> None:
        self._accepting = False
