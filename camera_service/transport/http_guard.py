"""Slow and numerous HTTP peers on port 8003: connection caps and read deadlines.

- `GuardedSite` listens like aiohttp's `TCPSite` but wraps each connection's protocol: over
  `http.max_connections_per_address` or `http.max_connections` the connection is aborted as
  soon as it is accepted, before aiohttp sees it; and the first request head must be
  complete within `http.header_timeout` of the connection, or it is aborted. Later heads on
  a kept-alive connection fall under aiohttp's `keepalive_timeout`, which the server sets to
  the same value: an idle or half-sent next request is closed after it as well.
- `body_deadline` (middleware) reads a request body within `http.body_timeout` (408 and the
  connection closed when it does not arrive), so no handler waits on a trickling body.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any, cast

from aiohttp import web

from camera_service.transport.admission import AddressCap

log = logging.getLogger(__name__)

HEAD_END = b"\r\n\r\n"
Handler = Callable[[web.Request], Any]


class GuardedProtocol(asyncio.Protocol):
    """Sits between the event loop and aiohttp's request handler for one connection."""

    def __init__(
        self,
        inner: asyncio.Protocol,
        cap: AddressCap,
        header_timeout: float,
        on_refused: Callable[[str, str], None],
    ) -> None:
        self._inner = inner
        self._cap = cap
        self._header_timeout = header_timeout
        self._on_refused = on_refused
        self._address = ""
        self._admitted = False
        self._transport: asyncio.Transport | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        self._tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self._address = str(peer[0]) if peer else "unknown"
        if not self._cap.admit(self._address):
            self._on_refused(self._address, "cap")
            self._transport.abort()
            return
        self._admitted = True
        loop = asyncio.get_running_loop()
        self._head_timer = loop.call_later(self._header_timeout, self._head_overdue)
        self._inner.connection_made(transport)

    def _head_overdue(self) -> None:
        self._head_timer = None
        self._on_refused(self._address, "header_timeout")
        if self._transport is not None:
            self._transport.abort()

    def data_received(self, data: bytes) -> None:
        if not self._admitted:
            return
        if self._head_timer is not None:
            if HEAD_END in self._tail + data:
                self._head_timer.cancel()
                self._head_timer = None
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
        if not self._admitted:
            return
        self._admitted = False
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
    ) -> None:
        super().__init__(runner)
        self._host = host
        self._port = port
        self._cap = cap
        self._header_timeout = header_timeout
        self._on_refused = on_refused

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    def _protocol(self) -> asyncio.Protocol:
        server = self._runner.server
        assert server is not None
        return GuardedProtocol(server(), self._cap, self._header_timeout, self._on_refused)

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


def body_deadline(timeout: float) -> Any:
    """Middleware: a request body must be complete within `timeout` seconds (else 408 and
    the connection closed). The body is read here, up to the app's `client_max_size`, so
    handlers find it buffered."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.body_exists:
            try:
                async with asyncio.timeout(timeout):
                    await request.read()
            except TimeoutError:
                log.info("request body not received in time", extra={"remote": request.remote})
                raise web.HTTPRequestTimeout(
                    text="request body not received in time\n", headers={"Connection": "close"}
                ) from None
        response: web.StreamResponse = await handler(request)
        return response

    return middleware
