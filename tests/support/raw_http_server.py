"""A scripted HTTP/1.1 server on raw asyncio streams, for testing HTTP clients.

Each accepted connection runs ``handler(conn)``; the handler reads requests with
:meth:`RawConnection.read_request` and writes whatever bytes it likes, well-formed or not.
The server records every connection and request and signals them through events, so tests
wait on what happened instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

HEAD_LIMIT = 64 * 1024
WAIT = 5.0


@dataclass
class RawRequest:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@dataclass
class RawConnection:
    index: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    requests: list[RawRequest] = field(default_factory=list)
    #: Set on every request read (the server's change signal).
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    #: Set once the peer (the client) has closed its side or reset the connection.
    peer_closed: asyncio.Event = field(default_factory=asyncio.Event)

    async def read_request(self) -> RawRequest | None:
        """The next request (None when the client closed the connection first)."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            self.peer_closed.set()
            return None
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        request = RawRequest(method, target, headers, body)
        self.requests.append(request)
        self.changed.set()
        return request

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    async def respond(
        self, body: bytes = b"{}", *, status: str = "200 OK", headers: str = ""
    ) -> None:
        """A Content-Length response."""
        head = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{headers}\r\n"
        self.writer.write(head.encode() + body)
        await self.writer.drain()

    async def wait_peer_closed(self) -> None:
        """Until the client closes the connection (reading and dropping anything it sends)."""
        with contextlib.suppress(ConnectionError):
            while await self.reader.read(65536):
                pass
        self.peer_closed.set()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


Handler = Callable[[RawConnection], Awaitable[None]]


def keep_alive(body: bytes = b"{}") -> Handler:
    """A handler answering every request on the connection with ``body``."""

    async def handler(conn: RawConnection) -> None:
        while await conn.read_request() is not None:
            await conn.respond(body)

    return handler


class RawHTTPServer:
    """``async with RawHTTPServer(handler) as server``: listening on 127.0.0.1, a free port."""

    def __init__(self, handler: Handler, *, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.connections: list[RawConnection] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[RawRequest]:
        return [request for conn in self.connections for request in conn.requests]

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", 0, limit=HEAD_LIMIT, ssl=self.tls
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for conn in self.connections:
            conn.writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def wait_connections(self, count: int) -> None:
        """Until at least ``count`` connections have been accepted (deadline: WAIT)."""
        await self._wait(lambda: len(self.connections) >= count)

    async def wait_requests(self, count: int) -> None:
        """Until at least ``count`` requests have been read (deadline: WAIT)."""
        await self._wait(lambda: len(self.requests) >= count)

    async def _wait(self, done: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT):
            while not done():
                self._changed.clear()
                await self._changed.wait()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = RawConnection(len(self.connections), reader, writer, changed=self._changed)
        self.connections.append(conn)
        self._changed.set()
        task = asyncio.create_task(self._run(conn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, conn: RawConnection) -> None:
        """The handler, then the connection is closed (when the handler has not)."""
        with contextlib.suppress(ConnectionError):
            await self.handler(conn)
        await conn.close()
