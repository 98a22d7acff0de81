"""Slow and numerous HTTP peers on port 8003: connection caps and read deadlines.

- `GuardedSite` listens like aiohttp's `TCPSite` but wraps each connection's protocol: over
  `http.max_connections_per_address` the connection is aborted as soon as it is accepted,
  before aiohttp sees it. At `http.max_connections` the connection that has waited longest
  for its first request head (at least 1 s) is aborted to make room, so slow connections
  cannot keep a quick client (a health probe) out; with none such the newcomer is aborted.
  The first request head must be complete within `http.header_timeout` of the connection,
  or it is aborted. Later heads on a kept-alive connection fall under aiohttp's
  `keepalive_timeout`, which the server sets to the same value: an idle or half-sent next
  request is closed after it as well.
- `body_deadline` (middleware): a request body must arrive within `http.body_timeout`;
  a handler still waiting for it then gets an error from its read and the client 408 with
  the connection closed, so no handler waits on a trickling body.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from typing import Any, cast

from aiohttp import web

from camera_service.transport.admission import AddressCap

log = logging.getLogger(__name__)

HEAD_END = b"\r\n\r\n"
EVICT_MIN_AGE_S = 1.0  # a connection still waiting for its head this young is not evicted
Handler = Callable[[web.Request], Any]


class WaitingHeads:
    """Connections still waiting for their first request head, oldest first."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._since: dict[GuardedProtocol, float] = {}
        self.clock = clock

    def add(self, protocol: GuardedProtocol) -> None:
        self._since[protocol] = self.clock()

    def discard(self, protocol: GuardedProtocol) -> None:
        self._since.pop(protocol, None)

    def evict_oldest(self) -> bool:
        """Drop the oldest waiting connection if it waited long enough; True when one went."""
        for protocol, since in self._since.items():
            if self.clock() - since < EVICT_MIN_AGE_S:
                return False
            del self._since[protocol]
            protocol.shed()
            return True
        return False


class GuardedProtocol(asyncio.Protocol):
    """Sits between the event loop and aiohttp's request handler for one connection."""

    def __init__(
        self,
        inner: asyncio.Protocol,
        cap: AddressCap,
        header_timeout: float,
        on_refused: Callable[[str, str], None],
        waiting: WaitingHeads | None = None,
    ) -> None:
        self._inner = inner
        self._cap = cap
        self._header_timeout = header_timeout
        self._on_refused = on_refused
        self._waiting = waiting or WaitingHeads()
        self._address = ""
        self._admitted = False
        self._counted = False  # holds a place in the cap
        self._transport: asyncio.Transport | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        self._tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self._address = str(peer[0]) if peer else "unknown"
        cap = self._cap
        admitted = cap.admit(self._address)
        # When the total is full (not this address's share), the slowest may make room.
        total_full = not admitted and cap.count(self._address) < cap.per_address
        if total_full and self._waiting.evict_oldest():
            self._on_refused("(oldest waiting)", "evicted")
            admitted = cap.admit(self._address)
        if not admitted:
            self._on_refused(self._address, "cap")
            self._transport.abort()
            return
        self._admitted = self._counted = True
        self._waiting.add(self)
        loop = asyncio.get_running_loop()
        self._head_timer = loop.call_later(self._header_timeout, self._head_overdue)
        self._inner.connection_made(transport)

    def _head_overdue(self) -> None:
        self._head_timer = None
        self._on_refused(self._address, "header_timeout")
        self.shed()

    def shed(self) -> None:
        """Give up this connection now: its place in the cap is free at once."""
        self._waiting.discard(self)
        if self._counted:
            self._counted = False
            self._cap.release(self._address)
        if self._transport is not None:
            self._transport.abort()

    def data_received(self, data: bytes) -> None:
        if not self._admitted:
            return
        if self._head_timer is not None:
            if HEAD_END in self._tail + data:
                self._head_timer.cancel()
                self._head_timer = None
                self._waiting.discard(self)
            else:
                self._tail = (self._tail + data)[-3:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        if not self._admitted:
            return None
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        if self._admitted:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._admitted:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self._waiting.discard(self)
        if not self._admitted:
            return
        self._admitted = False
        if self._counted:
            self._counted = False
            self._cap.release(self._address)
        self._inner.connection_lost(exc)


class GuardedSite(web.BaseSite):
    """A TCP site whose connections go through `GuardedProtocol`."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        cap: AddressCap,
        header_timeout: float,
        on_refused: Callable[[str, str], None],
        waiting: WaitingHeads,
    ) -> None:
        super().__init__(runner)
        self._host = host
        self._port = port
        self._cap = cap
        self._header_timeout = header_timeout
        self._on_refused = on_refused
        self._waiting = waiting

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    def _protocol(self) -> asyncio.Protocol:
        server = self._runner.server
        assert server is not None
        return GuardedProtocol(
            server(), self._cap, self._header_timeout, self._on_refused, self._waiting
        )

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol, self._host, self._port, reuse_address=True
        )

    @property
    def sockets(self) -> list[socket.socket]:
        server = self._server
        return list(getattr(server, "sockets", []) or [])


class BodyTimeout(Exception):
    """The request body did not arrive in time (raised into the handler's read)."""


def body_deadline(timeout: float) -> Any:
    """Middleware: a request body must be complete within `timeout` seconds of its head.
    When it is not, a handler waiting on it gets `BodyTimeout` from its read, and the client
    408 with the connection closed. (A handler that never reads the body is not held up by
    it; aiohttp then discards the rest within its lingering time.)"""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.body_exists:
            response: web.StreamResponse = await handler(request)
            return response
        content = request.content

        def overdue() -> None:
            if not content.is_eof():
                content.set_exception(BodyTimeout())

        timer = asyncio.get_running_loop().call_later(timeout, overdue)
        try:
            response = await handler(request)
        except BodyTimeout:
            log.info("request body not received in time", extra={"remote": request.remote})
            raise web.HTTPRequestTimeout(
                text="request body not received in time\n", headers={"Connection": "close"}
            ) from None
        finally:
            timer.cancel()
        return response

    return middleware
