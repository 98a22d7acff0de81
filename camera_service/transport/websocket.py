"""WebSocket transport: listening, admission, sessions, keepalive and shutdown.

Each connection is a `WsConnection` (transport/ws_connection.py): an asyncio Protocol over
websockets' Sans-I/O `ServerProtocol`, with no task of its own while idle.

Accept: more than `max_connections_per_address` TCP connections from one address are dropped
at once. Handshake (within `HANDSHAKE_TIMEOUT_S`): wrong path → 404, origin not allowed → 403,
the slot rules of `admission.slot_decision` (per-address and total caps on unauthenticated
connections, reserved slots, the oldest unauthenticated connection making room) → 503 with
Retry-After. Frames over `max_message_bytes` close with 1009, text that is not UTF-8 with
1007. Frames that arrive after the connection started closing are not processed. Outgoing
frames are written at once or queued per session, bounded in bytes (see `Session`); over the
bound the connection is closed with 1013. A connection that has not authenticated within
`auth_timeout` is closed with 1008.

Closing never waits for the peer to read: the close frame is written behind whatever is
buffered, and the transport is aborted `close_timeout` later if the peer has not finished
the closing handshake. Keepalive is one sweep over every connection: a peer silent for
`ping_interval` gets a ping, and one still silent `ping_timeout` after it is closed: with 1013
when frames are still waiting for it (a consumer too slow to keep up, which reads the code
once it catches up), else with 1011 (a dead or broken peer).
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import ssl
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

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
from camera_service.transport.ws_connection import WsConnection

log = logging.getLogger(__name__)

CLOSE_POLICY_VIOLATION = 1008
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN_LATER = 1013
SHUTDOWN_CLOSE_GRACE_S = 1.0  # at shutdown, how long peers get to finish the closing handshake
EVICT_MIN_AGE_S = 1.0  # an unauthenticated connection younger than this is not evicted
HANDSHAKE_TIMEOUT_S = 10.0  # TCP (and TLS) connected but no complete upgrade request: dropped
SWEEP_MIN_S = 0.05
SWEEP_MAX_S = 5.0


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
        self._connections: dict[str, WsConnection] = {}
        self._handshaking: dict[WsConnection, float] = {}  # connection → when it connected
        self._unproven: dict[str, WsConnection] = {}  # oldest first
        self._unproven_by_address: Counter[str] = Counter()
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[Any]] = set()
        self._accepting = True
        self._on_session_close = on_session_close
        self._closed_all = asyncio.Event()
        self.budget = SendBudget(config.send_queue_total_bytes)
        self.tcp_cap = AddressCap(config.max_connections_per_address)
        self._limited_log = RateLimitedLog(log)
        self.clock: Callable[[], float] = time.monotonic

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        tls = self._ssl_context()
        self._server = await loop.create_server(
            lambda: WsConnection(self),
            cfg.host,
            cfg.port,
            ssl=tls,
            ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S if tls is not None else None,
        )
        self._sweeper = loop.create_task(self._sweep(), name="websocket-keepalive")

    def _ssl_context(self) -> ssl.SSLContext | None:
        tls = self.config.tls
        if not tls.enabled:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
        return context

    # -- connection life (called by WsConnection) ------------------------------------------

    def connection_started(self, conn: WsConnection) -> bool:
        """TCP accepted: count it against the per-address cap (False: drop it now)."""
        conn.admitted = self.tcp_cap.admit(conn.address)
        if not conn.admitted:
            self.metrics.handshake_rejected("address")
            self._limited_log.warning(
                "tcp-cap", "connection from %s refused: over the per-address cap", conn.address
            )
            return False
        self._handshaking[conn] = self.clock()
        return True

    def admit(self, conn: WsConnection, request: Request) -> Response | None:
        """The handshake checks: None lets the upgrade proceed, else the refusal to send."""
        path = request.path.split("?", 1)[0]
        if path != self.config.path:
            return self._reject(conn, http.HTTPStatus.NOT_FOUND, "path", "Not Found")
        if not self._accepting:
            return self._reject(
                conn, http.HTTPStatus.SERVICE_UNAVAILABLE, "shutdown", "Shutting down"
            )
        if not self._origin_allowed(request.headers):
            return self._reject(conn, http.HTTPStatus.FORBIDDEN, "origin", "Origin not allowed")
        decision, oldest = self._slot(conn.address)
        if decision is Slot.REFUSE_ADDRESS or decision is Slot.REFUSE_FULL:
            text = (
                "Too many unauthenticated connections from this address"
                if decision is Slot.REFUSE_ADDRESS
                else "Too many connections"
            )
            response = self._reject(conn, http.HTTPStatus.SERVICE_UNAVAILABLE, decision.value, text)
            response.headers["Retry-After"] = "5"
            return response
        if decision is Slot.EVICT_AND_ADMIT and oldest is not None and oldest.session is not None:
            self.metrics.handshake_rejected("evicted")
            self._limited_log.warning(
                "evict", "all unauthenticated slots held: closing the oldest (%s)", oldest.address
            )
            self._drop(oldest.session, CLOSE_TRY_AGAIN_LATER, "server busy: authenticate sooner")
        return None

    def opened(self, conn: WsConnection) -> Session:
        self._handshaking.pop(conn, None)
        session = self._new_session(conn)
        self.sessions[session.session_id] = session
        self._connections[session.session_id] = conn
        self._unproven[session.session_id] = conn
        self._unproven_by_address[conn.address] += 1
        session.on_proven(self._proven)
        self.metrics.connection_opened()
        return session

    def connection_ended(self, conn: WsConnection) -> None:
        self._handshaking.pop(conn, None)
        if conn.admitted:
            conn.admitted = False
            self.tcp_cap.release(conn.address)
        session = conn.session
        if session is None:
            return
        conn.session = None
        session.close()
        self._forget_unproven(session)
        self.sessions.pop(session.session_id, None)
        self._connections.pop(session.session_id, None)
        self.bus.drop(session.subscriber_id)
        self.metrics.connection_closed()
        if self._on_session_close:
            self._on_session_close(session)
        if not self._connections:
            self._closed_all.set()

    def _proven(self, session: Session) -> None:
        self._forget_unproven(session)

    def _forget_unproven(self, session: Session) -> None:
        conn = self._unproven.pop(session.session_id, None)
        if conn is not None:
            left = self._unproven_by_address[conn.address] - 1
            if left > 0:
                self._unproven_by_address[conn.address] = left
            else:
                del self._unproven_by_address[conn.address]

    def track(self, task: asyncio.Task[Any]) -> None:
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def answer(self, session: Session, parsed: Parsed | Invalid) -> None:
        try:
            response = await self.dispatcher.handle_parsed(session, parsed)
        except Exception:
            # Last line of defence: dispatch answers every error it knows about itself.
            request_id = uuid.uuid4().hex[:16]
            log.exception("failed to answer a frame", extra={"request_id": request_id})
            response = encode(error_response(None, InternalError(request_id)))
        if response is not None:
            session.send(response)

    # -- admission ---------------------------------------------------------------------------

    def _slot(self, address: str) -> tuple[Slot, WsConnection | None]:
        """The slot rule for a handshake from `address`, and the connection that makes room."""
        cfg = self.config
        limits = SlotLimits(
            cfg.max_connections, cfg.reserved_slots, cfg.max_unauthenticated_per_address
        )
        oldest = next(iter(self._unproven.values()), None)
        young = (
            oldest is not None
            and oldest.session is not None
            and (self.clock() - oldest.session.opened_at < EVICT_MIN_AGE_S)
        )
        if young:
            oldest = None  # a burst of clients still authenticating: refuse instead
        decision = slot_decision(
            limits,
            len(self.sessions),
            len(self._unproven),
            self._unproven_by_address.get(address, 0),
            evictable=oldest is not None,
        )
        return decision, oldest

    def _reject(
        self, conn: WsConnection, status: http.HTTPStatus, reason: str, text: str
    ) -> Response:
        self.metrics.handshake_rejected(reason)
        return conn.proto.reject(status, text + "\n")

    def _origin_allowed(self, headers: Headers) -> bool:
        allowed = self.config.allowed_origins
        if not allowed:
            return True
        origins = headers.get_all("Origin")  # more than one Origin header is refused
        return len(origins) == 1 and origins[0] in allowed

    def _new_session(self, conn: WsConnection) -> Session:
        cfg = self.config
        limit = cfg.rate_limit
        bucket = TokenBucket(limit.per_second, limit.burst) if limit.enabled else None
        session = Session(
            conn.address,
            cfg.send_queue_size,
            bucket,
            self._overflow,
            queue_bytes=cfg.send_queue_bytes,
            unauthenticated_bytes=cfg.unauthenticated_queue_bytes,
            budget=self.budget,
        )
        session.write_now = conn.write_text
        session.buffered = conn.buffered
        assert conn.transport is not None
        local = conn.transport.get_extra_info("sockname")
        session.host = str(local[0]) if local else None
        return session

    def _overflow(self, session: Session) -> None:
        self._limited_log.warning(
            "overflow", "client too slow (send queue full), closing with 1013"
        )
        log.info("client too slow, closing", extra={"session": session.session_id})
        self._drop(session, CLOSE_TRY_AGAIN_LATER, "send queue full")

    def _drop(self, session: Session, code: int, reason: str) -> None:
        """Close a session's connection now (see `WsConnection.close`); its queue is released."""
        session.close()
        self._forget_unproven(session)
        conn = self._connections.get(session.session_id)
        if conn is not None:
            conn.close(code, reason, self.config.close_timeout)

    # -- keepalive and deadlines -------------------------------------------------------------

    def _sweep_period(self) -> float:
        cfg = self.config
        shortest = min(cfg.ping_interval, cfg.ping_timeout, cfg.auth_timeout)
        return max(SWEEP_MIN_S, min(SWEEP_MAX_S, shortest / 4))

    async def _sweep(self) -> None:
        """One loop for every connection: keepalive pings, their timeouts, the authentication
        and handshake deadlines."""
        while True:
            await asyncio.sleep(self._sweep_period())
            try:
                self.sweep_once(self.clock())
            except Exception:
                log.exception("websocket keepalive sweep failed; continuing")

    def sweep_once(self, now: float) -> None:
        cfg = self.config
        for conn, started in list(self._handshaking.items()):
            if now - started > HANDSHAKE_TIMEOUT_S and conn.transport is not None:
                self._handshaking.pop(conn, None)
                self.metrics.handshake_rejected("handshake_timeout")
                conn.transport.abort()
        for conn in list(self._unproven.values()):
            session = conn.session
            if session is None or now - session.opened_at < cfg.auth_timeout:
                break  # oldest first: the rest are younger
            self.metrics.handshake_rejected("auth_timeout")
            self._drop(session, CLOSE_POLICY_VIOLATION, "authentication timeout")
        for session_id, conn in list(self._connections.items()):
            if conn.ping_sent:
                if now - conn.ping_sent > cfg.ping_timeout:
                    session = self.sessions.get(session_id)
                    if session is not None and not session.closed:
                        self._keepalive_timeout(conn, session)
            elif now - conn.last_rx >= cfg.ping_interval:
                conn.ping()

    def _keepalive_timeout(self, conn: WsConnection, session: Session) -> None:
        """No pong in time. A peer with frames still waiting for it is a consumer too slow
        to keep up (1013, it may read it when it catches up); one with nothing waiting is
        gone or broken (1011)."""
        unread = conn.unread()
        if unread > 0:
            log.warning(
                "client too slow (keepalive unanswered, %d bytes unread), closing with 1013",
                unread,
                extra={"session": session.session_id},
            )
            self._drop(session, CLOSE_TRY_AGAIN_LATER, "too slow: keepalive not answered")
        else:
            self._drop(session, CLOSE_INTERNAL_ERROR, "keepalive ping timeout")

    # -- shutdown ----------------------------------------------------------------------------

    async def drain_inflight(self, timeout: float) -> None:
        """Wait for calls in progress to finish (bounded)."""
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=timeout)

    async def flush_outboxes(self, timeout: float) -> None:
        """Give queued frames (e.g. system.shutdown) a bounded chance to reach the sockets."""
        waiters = [asyncio.ensure_future(s.drained()) for s in self.sessions.values()]
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
        self._server.close()
        await self.drain_inflight(timeout)
        await self.flush_outboxes(min(timeout, 1.0))
        grace = min(self.config.close_timeout, SHUTDOWN_CLOSE_GRACE_S)
        for session_id, conn in list(self._connections.items()):
            session = self.sessions.get(session_id)
            if session is not None:
                session.close()
            conn.close(1001, "server shutting down", grace)
        for conn in list(self._handshaking):
            if conn.transport is not None:
                conn.transport.abort()
        if self._connections:
            self._closed_all.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed_all.wait(), grace + 1.0)
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), timeout)

    def stop_accepting(self) -> None:
        self._accepting = False
