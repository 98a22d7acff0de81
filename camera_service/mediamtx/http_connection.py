"""One client connection of :mod:`camera_service.mediamtx.http_client`: an asyncio Protocol
feeding an ``h11.Connection`` in the CLIENT role.

The protocol buffers what the socket delivers until the exchange parses it, pausing the
socket while :data:`READ_HIGH_WATER` bytes wait (resuming below :data:`READ_LOW_WATER`), and
records whether any of the request was written and any of the response received, which
decides whether a lost connection may be retried.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import cast

import h11

from camera_service.mediamtx.http_errors import ConnectionLost, ProtocolViolation

#: Reading from the socket pauses while this many received bytes wait to be parsed, and
#: resumes below :data:`READ_LOW_WATER`.
READ_HIGH_WATER = 256 * 1024
READ_LOW_WATER = 64 * 1024


class Connection(asyncio.Protocol):
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
        #: h11 has parsed everything it was given: the next received chunk goes in at once.
        self._hungry = True
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
        self.on_idle_lost: Callable[[Connection], None] | None = None

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
        self._hungry = True  # h11's receive buffer is empty between exchanges
        self.transport.write(data)
        while self._writing_paused and not self.lost:
            self._drain_waiter = self._loop.create_future()
            await self._drain_waiter
        # A connection lost meanwhile shows when the response is read (an answer may have
        # arrived before the close).

    def poll(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        """The next h11 event from what has been received, or ``h11.NEED_DATA`` when the
        socket must deliver more first (then :meth:`wait_data`)."""
        while True:
            if self._hungry:
                # h11's buffer is spent: hand it one received chunk (or the end of file) at
                # a time, so what waits unparsed stays in this protocol's bounded queue.
                if self._chunks:
                    self._feed()
                elif self._eof and not self._eof_fed:
                    self._eof_fed = True
                    self.h11.receive_data(b"")
                else:
                    return h11.NEED_DATA
                self._hungry = False
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
            self._hungry = True

    def _feed(self) -> None:
        data = self._chunks.popleft()
        self._buffered -= len(data)
        if self._reading_paused and self._buffered <= READ_LOW_WATER and not self.lost:
            self._reading_paused = False
            assert self.transport is not None
            self.transport.resume_reading()
        self.h11.receive_data(data)

    async def wait_data(self) -> None:
        """Until something more arrives (data, end of file or the close)."""
        if self._chunks or (self._eof and not self._eof_fed):
            return
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    async def next_event(self) -> h11.Event | type[h11.PAUSED]:
        """The next h11 event of the response, reading from the socket as needed."""
        while (event := self.poll()) is h11.NEED_DATA:
            await self.wait_data()
        return cast("h11.Event | type[h11.PAUSED]", event)
