"""One WebSocket connection as an asyncio Protocol over websockets' Sans-I/O `ServerProtocol`.

No task, queue or timer is kept per idle connection: bytes arrive in `data_received`, go
through the Sans-I/O parser, and each complete message is answered from there. Methods that
never await I/O (registry `inline=True`) run eagerly in that callback, which keeps their order
(`authenticate` binds before the next frame) and costs no task; should one suspend after all
(a batch gathers its entries), it continues as a task and reading pauses until it is done.
Other methods run as tasks, at most `max_inflight` at once; past that, reading pauses (the
peer's own TCP window then holds what it sends). Outgoing frames are written at once while
the socket buffer has room; beyond that the session queues them (bounded in bytes, see
`Session`) and this protocol drains the queue when the transport resumes writing.

Keepalive and deadlines live in the server (one sweep for all connections); this class only
records when the peer last sent anything.
"""

from __future__ import annotations

import asyncio
import contextvars
import fcntl
import logging
import struct
import termios
from collections import deque
from collections.abc import Coroutine, Generator
from typing import TYPE_CHECKING, Any, cast

from websockets.exceptions import InvalidState
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from camera_service.rpc.session import Session

if TYPE_CHECKING:
    from camera_service.transport.websocket import WebSocketServer

log = logging.getLogger(__name__)
protocol_log = logging.getLogger("websockets.server")

WRITE_LIMIT = 1 << 16  # bytes buffered in the transport before frames wait in the session queue
DATA = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)


class _Continue:
    """Awaitable that finishes a coroutine which already ran (and suspended) outside a task:
    `yield from`, with the coroutine's first step already taken."""

    __slots__ = ("_coro", "_yielded")

    def __init__(self, coro: Coroutine[Any, Any, None], yielded: Any) -> None:
        self._coro = coro
        self._yielded = yielded

    def __await__(self) -> Generator[Any, Any, None]:
        value = self._yielded
        while True:
            try:
                sent = yield value
            except BaseException as exc:  # cancellation and the like go into the coroutine
                try:
                    value = self._coro.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    value = self._coro.send(sent)
                except StopIteration:
                    return


async def _finish(awaitable: _Continue) -> None:
    await awaitable


def _unsent_in_kernel(sock: Any) -> int:
    """The socket's send queue (Linux ``SIOCOUTQ``: unsent plus unacknowledged bytes)."""
    if sock is None:
        return 0
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except (OSError, ValueError):
        return 0
    return int(struct.unpack("i", raw)[0])


class WsConnection(asyncio.Protocol):
    __slots__ = (
        "_backlog",
        "_blocked",
        "_close_timer",
        "_fragments",
        "_inflight",
        "_output_full",
        "_reading_paused",
        "_text",
        "address",
        "admitted",
        "last_rx",
        "ping_sent",
        "proto",
        "server",
        "session",
        "transport",
    )

    def __init__(self, server: WebSocketServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.proto = ServerProtocol(max_size=server.config.max_message_bytes, logger=protocol_log)
        self.session: Session | None = None
        self.address = "unknown"
        self.admitted = False
        self.last_rx = 0.0
        self.ping_sent = 0.0  # when the outstanding keepalive ping left (0: none outstanding)
        self._fragments: list[bytes] | None = None
        self._text = True
        self._inflight = 0
        self._blocked = False  # an inline answer continues as a task: later frames wait
        self._backlog: deque[Frame] | None = None
        self._reading_paused = False
        self._output_full = False
        self._close_timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.address = str(peer[0]) if peer else "unknown"
        self.last_rx = self.server.clock()
        if not self.server.connection_started(self):
            transport.abort()
            return
        transport.set_write_buffer_limits(high=WRITE_LIMIT)

    def data_received(self, data: bytes) -> None:
        self.last_rx = self.server.clock()
        self.ping_sent = 0.0
        proto = self.proto
        proto.receive_data(data)
        events = proto.events_received()
        self.flush()
        if proto.close_expected():
            self._expect_close()
        limit = self.server.config.max_inflight
        for event in events:
            if isinstance(event, Request):
                self._handshake(event)
            elif not isinstance(event, Frame):
                continue
            elif self._blocked or self._backlog or self._inflight >= limit:
                self._defer(event)
            else:
                self._frame(event)

    def eof_received(self) -> bool | None:
        self.proto.receive_eof()
        self.proto.events_received()
        self.flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.proto.receive_eof()
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        self._backlog = None
        self.server.connection_ended(self)

    def pause_writing(self) -> None:
        # The peer is not reading what we send: stop reading what it sends until it does,
        # so nothing it sends (pings answered with pongs included) grows our buffers. Frames
        # meanwhile wait in the session queue, bounded in bytes.
        self._output_full = True
        self._pause()

    def resume_writing(self) -> None:
        self._output_full = False
        if self.session is not None:
            self.session.flush()
        self._drain_backlog()

    # -- output ----------------------------------------------------------------------------

    def flush(self) -> None:
        """Hand what the Sans-I/O protocol has to send to the transport."""
        transport = self.transport
        if transport is None:
            return
        for data in self.proto.data_to_send():
            if data:
                transport.write(data)
            elif transport.can_write_eof():
                transport.write_eof()
            else:
                transport.close()

    def write_text(self, data: bytes) -> bool:
        """Write one text frame now if the socket can take it (the session's `write_now`)."""
        transport = self.transport
        if (
            self.proto.state is not State.OPEN
            or transport is None
            or transport.get_write_buffer_size() > WRITE_LIMIT
        ):
            return False
        self.proto.send_text(data)
        self.flush()
        return True

    def buffered(self) -> int:
        transport = self.transport
        return transport.get_write_buffer_size() if transport is not None else 0

    def unread(self) -> int:
        """Bytes written for the peer that it has not taken yet: buffered in the transport,
        or still in the kernel's send queue (not yet acknowledged). A peer that reads keeps
        this near zero; one that stopped reading leaves its frames here."""
        transport = self.transport
        if transport is None:
            return 0
        return self.buffered() + _unsent_in_kernel(transport.get_extra_info("socket"))

    def ping(self) -> None:
        if self.proto.state is State.OPEN:
            self.proto.send_ping(b"ka")
            self.flush()
            self.ping_sent = self.server.clock()

    def close(self, code: int, reason: str, grace: float) -> None:
        """Start the closing handshake without waiting for the peer to read what is queued;
        drop the TCP connection `grace` seconds later unless it is gone by then."""
        try:
            if self.proto.state is State.OPEN:
                self.proto.send_close(code, reason)
                self.flush()
        except InvalidState:
            pass
        self._expect_close(grace)

    def _expect_close(self, grace: float | None = None) -> None:
        transport = self.transport
        if transport is None or self._close_timer is not None or transport.is_closing():
            return
        delay = self.server.config.close_timeout if grace is None else grace
        self._close_timer = asyncio.get_running_loop().call_later(delay, transport.abort)

    # -- input -----------------------------------------------------------------------------

    def _handshake(self, request: Request) -> None:
        response = self.server.admit(self, request)
        if response is None:
            response = self.proto.accept(request)
        self.proto.send_response(response)
        self.flush()
        if response.status_code == 101 and self.proto.state is State.OPEN:
            self.session = self.server.opened(self)
        else:
            self._expect_close()

    def _frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode not in DATA:
            return  # ping, pong and close are answered by the Sans-I/O protocol
        if opcode is Opcode.CONT:
            if self._fragments is None:
                return
            self._fragments.append(bytes(frame.data))
        elif frame.fin:
            self._message(bytes(frame.data), opcode is Opcode.TEXT)
            return
        else:
            self._fragments = [bytes(frame.data)]
            self._text = opcode is Opcode.TEXT
            return
        if frame.fin:
            data, self._fragments = b"".join(self._fragments), None
            self._message(data, self._text)

    def _message(self, data: bytes, text: bool) -> None:
        session = self.session
        if session is None or session.closed or self.proto.state is not State.OPEN:
            return  # the connection is going away: its frames are not processed
        message: str | bytes = data
        if text:
            try:
                message = data.decode()
            except UnicodeDecodeError:
                self.proto.fail(CloseCode.INVALID_DATA, "invalid UTF-8 in a text frame")
                self.flush()
                self._expect_close()
                return
        server = self.server
        parsed = server.dispatcher.parse(message)
        if server.dispatcher.is_inline(parsed):
            self._run_inline(server.answer(session, parsed))
            return
        self._inflight += 1
        task = asyncio.get_running_loop().create_task(server.answer(session, parsed))
        server.track(task)
        task.add_done_callback(self._call_done)
        if self._inflight >= server.config.max_inflight:
            self._pause()

    def _run_inline(self, coro: Coroutine[Any, Any, None]) -> None:
        context = contextvars.copy_context()
        try:
            yielded = context.run(coro.send, None)
        except StopIteration:
            return
        # It awaited after all: finish it as a task in the same context, frames wait.
        self._blocked = True
        task = asyncio.get_running_loop().create_task(
            _finish(_Continue(coro, yielded)), context=context
        )
        self.server.track(task)
        task.add_done_callback(self._inline_done)
        self._pause()

    def _inline_done(self, task: asyncio.Task[None]) -> None:
        self._blocked = False
        self._drain_backlog()

    def _call_done(self, task: asyncio.Task[None]) -> None:
        self._inflight -= 1
        self._drain_backlog()

    def _defer(self, frame: Frame) -> None:
        if frame.opcode not in DATA:
            return
        if self._backlog is None:
            self._backlog = deque()
        self._backlog.append(frame)
        self._pause()

    def _drain_backlog(self) -> None:
        limit = self.server.config.max_inflight
        backlog = self._backlog
        while backlog and not self._blocked and self._inflight < limit:
            self._frame(backlog.popleft())
        if not backlog:
            self._backlog = None
        if not self._blocked and self._inflight < limit and not self._backlog:
            self._resume()

    def _pause(self) -> None:
        if not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def _resume(self) -> None:
        if self._reading_paused and not self._output_full and self.transport is not None:
            self._reading_paused = False
            if not self.transport.is_closing():
                self.transport.resume_reading()
