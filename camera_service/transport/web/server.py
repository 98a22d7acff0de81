"""The HTTP server: listens, hands each connection an `HttpProtocol`, dispatches requests
to the router, and stops in bounded time.

`on_prepare` sees every response before its head goes out (error answers included, also
those to malformed requests, where the request is None); `access_log` gets one line per
request. `stop()` closes the listener and idle connections at once, gives requests being
answered `shutdown_timeout` to finish, then aborts what is left.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from camera_service.logging import redact
from camera_service.transport.admission import AddressCap, WaitingHeads
from camera_service.transport.web.messages import Request, StreamResponse
from camera_service.transport.web.protocol import HttpProtocol
from camera_service.transport.web.routing import Router

PrepareHook = Callable[[Request | None, StreamResponse], None]


class Server:
    def __init__(
        self,
        router: Router,
        *,
        cap: AddressCap,
        waiting: WaitingHeads,
        header_timeout: float,
        body_timeout: float,
        on_refused: Callable[[str, str], None],
        on_prepare: PrepareHook,
        access_log: logging.Logger,
    ) -> None:
        self.router = router
        self.cap = cap
        self.waiting = waiting
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.on_refused = on_refused
        self.on_prepare = on_prepare
        self.access_log = access_log
        self.closing = False
        self.connections: set[HttpProtocol] = set()
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: HttpProtocol(self), host, port, reuse_address=True
        )

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.sockets[0].getsockname()[1])

    async def dispatch(self, request: Request) -> StreamResponse:
        handler = self.router.resolve(request)
        return await handler(request)

    def access(self, request: Request, status: int, elapsed: float) -> None:
        if self.access_log.isEnabledFor(logging.INFO):
            self.access_log.info(
                "%s %s %s",
                request.method,
                redact(request.path_qs),
                status,
                extra={"remote": request.remote, "ms": round(elapsed * 1000, 2)},
            )

    async def stop(self, shutdown_timeout: float) -> None:
        self.closing = True
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            connection.close_when_idle()
        tasks = [c.task for c in self.connections if c.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=shutdown_timeout)
        for connection in list(self.connections):
            if connection.task is not None:
                connection.task.cancel()
            connection.abort()
        if tasks:
            await asyncio.wait(tasks, timeout=shutdown_timeout)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
