"""WebSocket transport: handshake checks, one read loop and one writer per connection.

Accept: more than `max_connections_per_address` TCP connections from one address are dropped
at once. Handshake: wrong path → 404, origin not allowed → 403, the slot rules of
`admission.slot_decision` (per-address and total caps on unauthenticated connections,
reserved slots, the oldest unauthenticated connection making room) → 503 with Retry-After.
Frames over `max_message_bytes` close with 1009 (websockets enforces `max_size`).
Frames whose methods never await I/O (registry `inline=True`: ping, authenticate, the
in-memory getters) are answered in the read loop itself, so `authenticate` binds before the
next frame is read; the others run as tasks, up to `max_inflight` per connection. Frames
that arrive after the connection started closing are not processed. Outgoing frames are
written at once or queued per session, bounded in bytes (see `Session`); over the bound the
connection is closed with 1013. A connection that has not authenticated within
`auth_timeout` is closed with 1008.

Closing never waits for the peer to read: the close frame is written without awaiting the
socket's drain, and the transport is aborted `close_timeout` later if the peer has not
finished the closing handshake. Keepalive pings run per connection with the ping and its
answer under one `ping_timeout`, so a peer that reads nothing is closed like a dead one.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import ssl
import time
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
from camera_service.rpc.session import SendBudget, Session, TokenBucket
from camera_service.transport.admission import (
    AddressCap,
    RateLimitedLog,
    Slot,
    SlotLimits,
    slot_decision,
)

log = logging.getLogger(__name__)

CLOSE_POLICY_VIOLATION = 1008
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN_LATER = 1013
WRITE_LIMIT = 1 << 16  # bytes buffered in the transport before direct writes defer to the queue
SHUTDOWN_CLOSE_GRACE_S = 1.0  # at shutdown, how long peers get to finish the closing handshake
EVICT_MIN_AGE_S = 1.0  # an unauthenticated connection younger than this is not evicted


def close_now(connection: ServerConnection, code: int, reason: str, grace: float) -> None:
    """Start the closing handshake without waiting for the socket to drain; abort the
    transport `grace` seconds later unless the connection is gone by then.

    `connection.close()` awaits the drain of everything queued before the close frame, which
    never completes for a peer that does not read; this writes the close frame behind that
    data (a peer that resumes reading still sees the code) and bounds the wait."""
    protocol = connection.protocol
    if protocol.state is State.OPEN:
        protocol.send_close(code, reason)
        with contextlib.suppress(Exception):
            connection.send_data()
    transport = connection.transport
    if transport is not None and not transport.is_closing():
        asyncio.get_running_loop().call_later(grace, transport.abort)


def direct_writer(connection: ServerConnection) -> Callable[[bytes], bool]:
    """Write one text frame synchronously when the socket can take it.

    Uses the Sans-I/O protocol object of websockets (frame into its buffer, then
    `send_data()` to the transport): the same two steps `send()` takes, minus the awaiting.
    Only called when the session's writer task is idle, so frames never interleave."""
    protocol = connection.protocol

    def write(data: bytes) -> bool:
        transport = connection.transport
        if protocol.state is not State.OPEN or transport.get_write_buffer_size() > WRITE_LIMIT:
            return False
        protocol.send_text(data)
        connection.send_data()
        return True

    return write


class CappedConnection(ServerConnection):
    """A server connection that counts itself against its server's per-address TCP cap and
    drops itself at once when over it (the handshake task then ends without a log line)."""

    cap: AddressCap
    on_refused: Callable[[str], None]

    _admitted = False
    _address = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        self._address = str(peer[0]) if peer else "unknown"
        self._admitted = self.cap.admit(self._address)
        if not self._admitted:
            self.on_refused(self._address)
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._admitted:
            self._admitted = False
            self.cap.release(self._address)
        super().connection_lost(exc)


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
        self._connections: dict[str, ServerConnection] = {}
        self._server: Server | None = None
        self._inflight: set[asyncio.Task[Any]] = set()
        self._reserved: set[ServerConnection] = set()
        self._accepting = True
        self._on_session_close = on_session_close
        self.budget = SendBudget(config.send_queue_total_bytes)
        self.tcp_cap = AddressCap(config.max_connections_per_address)
        self._limited_log = RateLimitedLog(log)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        cfg = self.config
        connection_class = type(
            "ServiceConnection",
            (CappedConnection,),
            {"cap": self.tcp_cap, "on_refused": self._refused_at_accept},
        )
        self._server = await serve(
            self._handle,
            cfg.host,
            cfg.port,
            process_request=self._process_request,
            create_connection=connection_class,
            max_size=cfg.max_message_bytes,
            ping_interval=None,  # our own keepalive: see _keepalive
            close_timeout=cfg.close_timeout,
            ssl=self._ssl_context(),
            server_header=None,
            compression=None,
        )

    def _refused_at_accept(self, address: str) -> None:
        self.metrics.handshake_rejected("address")
        self._limited_log.warning(
            "tcp-cap", "connection from %s refused: over the per-address cap", address
        )

    def _ssl_context(self) -> ssl.SSLContext | None:
        tls = self.config.tls
        if not tls.enabled:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
        return context

    def _pending(self) -> set[ServerConnection]:
        """Handshakes accepted but not yet running (exact under concurrency)."""
        self._reserved = {c for c in self._reserved if c.protocol.state is State.CONNECTING}
        return self._reserved

    def _open_count(self) -> int:
        live = sum(1 for s in self.sessions.values() if not s.closed)
        return live + len(self._pending())

    def _slot(self, address: str) -> tuple[Slot, Session | None]:
        """The slot rule for a handshake from `address`, and the session that makes room."""
        pending = self._pending()
        unproven = [s for s in self.sessions.values() if not s.proven and not s.closed]
        from_address = sum(1 for s in unproven if s.remote == address)
        from_address += sum(1 for c in pending if _remote(c) == address)
        cfg = self.config
        limits = SlotLimits(
            cfg.max_connections, cfg.reserved_slots, cfg.max_unauthenticated_per_address
        )
        oldest = unproven[0] if unproven else None
        if oldest is not None and time.monotonic() - oldest.opened_at < EVICT_MIN_AGE_S:
            oldest = None  # a burst of clients still authenticating: refuse instead
        open_total = len(self.sessions) - sum(1 for s in self.sessions.values() if s.closed)
        decision = slot_decision(
            limits,
            open_total + len(pending),
            len(unproven) + len(pending),
            from_address,
            evictable=oldest is not None,
        )
        return decision, oldest

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
        decision, oldest = self._slot(_remote(connection))
        if decision is Slot.REFUSE_ADDRESS or decision is Slot.REFUSE_FULL:
            text = (
                "Too many unauthenticated connections from this address"
                if decision is Slot.REFUSE_ADDRESS
                else "Too many connections"
            )
            response = self._reject(
                connection, http.HTTPStatus.SERVICE_UNAVAILABLE, decision.value, text
            )
            response.headers["Retry-After"] = "5"
            return response
        if decision is Slot.EVICT_AND_ADMIT and oldest is not None:
            self.metrics.handshake_rejected("evicted")
            self._limited_log.warning(
                "evict", "all unauthenticated slots held: closing the oldest (%s)", oldest.remote
            )
            self._drop(oldest, CLOSE_TRY_AGAIN_LATER, "server busy: authenticate sooner")
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
        session.buffered = connection.transport.get_write_buffer_size
        session.host = _local(connection)
        self.sessions[session.session_id] = session
        self._connections[session.session_id] = connection
        self.metrics.connection_opened()
        loop = asyncio.get_running_loop()
        deadline = loop.call_later(self.config.auth_timeout, self._auth_deadline, session)
        writer = asyncio.create_task(self._write_loop(connection, session))
        keepalive = asyncio.create_task(self._keepalive(connection, session))
        try:
            await self._read_loop(connection, session)
        finally:
            deadline.cancel()
            writer.cancel()
            keepalive.cancel()
            session.close()
            self.sessions.pop(session.session_id, None)
            self._connections.pop(session.session_id, None)
            self.bus.drop(session.subscriber_id)
            self.metrics.connection_closed()
            if self._on_session_close:
                self._on_session_close(session)

    def _new_session(self, connection: ServerConnection) -> Session:
        cfg = self.config
        limit = cfg.rate_limit
        bucket = TokenBucket(limit.per_second, limit.burst) if limit.enabled else None

        def overflow(session: Session) -> None:
            self._limited_log.warning(
                "overflow", "client too slow (send queue full), closing with 1013"
            )
            log.info("client too slow, closing", extra={"session": session.session_id})
            self._drop(session, CLOSE_TRY_AGAIN_LATER, "send queue full")

        return Session(
            _remote(connection),
            cfg.send_queue_size,
            bucket,
            overflow,
            queue_bytes=cfg.send_queue_bytes,
            unauthenticated_bytes=cfg.unauthenticated_queue_bytes,
            budget=self.budget,
        )

    def _drop(self, session: Session, code: int, reason: str) -> None:
        """Close a session's connection now (see `close_now`); its queue is released."""
        session.close()
        connection = self._connections.get(session.session_id)
        if connection is not None:
            close_now(connection, code, reason, self.config.close_timeout)

    def _auth_deadline(self, session: Session) -> None:
        if not session.proven and not session.closed:
            self.metrics.handshake_rejected("auth_timeout")
            self._drop(session, CLOSE_POLICY_VIOLATION, "authentication timeout")

    async def _keepalive(self, connection: ServerConnection, session: Session) -> None:
        """Ping every `ping_interval`; no pong within `ping_timeout` (sending the ping
        included: it waits behind unread data) closes the connection with 1011."""
        cfg = self.config
        with contextlib.suppress(ConnectionClosed):
            while not session.closed:
                await asyncio.sleep(cfg.ping_interval)
                try:
                    async with asyncio.timeout(cfg.ping_timeout):
                        pong = await connection.ping()
                        await pong
                except TimeoutError:
                    self._drop(session, CLOSE_INTERNAL_ERROR, "keepalive ping timeout")
                    return

    async def _read_loop(self, connection: ServerConnection, session: Session) -> None:
        limiter = asyncio.Semaphore(self.config.max_inflight)
        with contextlib.suppress(ConnectionClosed):
            async for frame in connection:
                if session.closed or connection.protocol.state is not State.OPEN:
                    continue  # the connection is going away: its frames are not processed
                parsed = self.dispatcher.parse(frame)
                if self.dispatcher.is_inline(parsed):
                    # No I/O to wait for (and authenticate must bind before the next frame).
                    await self._answer(session, parsed)
                    continue
                await limiter.acquire()
                if session.closed:
                    limiter.release()
                    continue
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
                data = await session.outbox.get()
                session.writer_busy = True
                try:
                    await connection.send(data, text=True)
                finally:
                    session.writer_busy = False
                    session.sent(len(data))
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
        """Stop accepting, finish in-flight calls, close every socket with 1001.

        Bounded whatever the peers do: each gets the close frame at once and at most
        `SHUTDOWN_CLOSE_GRACE_S` to answer it before its transport is aborted."""
        self._accepting = False
        if self._server is None:
            return
        await self.drain_inflight(timeout)
        await self.flush_outboxes(min(timeout, 1.0))
        grace = min(self.config.close_timeout, SHUTDOWN_CLOSE_GRACE_S)
        for session_id, connection in list(self._connections.items()):
            session = self.sessions.get(session_id)
            if session is not None:
                session.close()
            close_now(connection, 1001, "server shutting down", grace)
        self._server.close(close_connections=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), timeout)

    def stop_accepting(self) -> None:
        self._accepting = False
