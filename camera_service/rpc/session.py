"""Per-connection state: identity, role, expiry, subscriptions' id, rate limit, send queue."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from camera_service.auth.identity import Identity
from camera_service.events import Event


class TokenBucket:
    """`rate` tokens per second up to `burst`; `take()` answers 0 or the ms to wait."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._stamp = clock()

    def take(self) -> int:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0
        return max(1, int((1.0 - self._tokens) / self.rate * 1000 + 0.999))


class SendBudget:
    """Bytes queued for sending by all sessions together, against one global cap."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.used = 0

    def reserve(self, size: int) -> bool:
        if self.used + size > self.cap:
            return False
        self.used += size
        return True

    def release(self, size: int) -> None:
        self.used = max(0, self.used - size)


UNLIMITED = 1 << 62


class Session:
    """One client connection. Outgoing frames are written to the socket at once while its
    buffer has room (`write_now`); the rest wait in a small queue that the transport drains
    (`flush`) as the socket empties. The queue is bounded in messages and in **bytes**:
    `queue_bytes` once the connection has proven a credential, `unauthenticated_bytes` before,
    and the global `budget` shared by every session. Bytes the transport still buffers
    (`buffered()`) count too. A frame that does not fit marks the session overflowed and
    `on_overflow` runs once (the transport closes the connection with 1013); nothing is
    queued after that, and what was queued is dropped. An authenticated session may send one
    frame larger than its budget when nothing else is pending (a large answer to a reading
    client); before authentication it may not.

    Idle sessions are small: the queue exists only while something waits in it."""

    __slots__ = (
        "__weakref__",
        "_budget",
        "_drained",
        "_identity",
        "_on_overflow",
        "_on_proven",
        "_outbox",
        "_proven",
        "_queue_bytes",
        "_queue_size",
        "_unauthenticated_bytes",
        "bucket",
        "buffered",
        "closed",
        "host",
        "opened_at",
        "overflowed",
        "queued_bytes",
        "remote",
        "session_id",
        "write_now",
    )

    def __init__(
        self,
        remote: str,
        queue_size: int,
        bucket: TokenBucket | None,
        on_overflow: Callable[[Session], None] = lambda session: None,
        *,
        queue_bytes: int = UNLIMITED,
        unauthenticated_bytes: int = UNLIMITED,
        budget: SendBudget | None = None,
    ) -> None:
        self.session_id = uuid.uuid4().hex
        self.remote = remote
        self.opened_at = time.monotonic()
        # The server address this client connected to (never its Host header), for links.
        self.host: str | None = None
        self._identity: Identity | None = None
        self._proven = False  # a credential was accepted on this connection (any way)
        self._on_proven: Callable[[Session], None] | None = None
        self.bucket = bucket
        self._outbox: deque[bytes] | None = None
        self._drained: asyncio.Future[None] | None = None
        self.queued_bytes = 0  # waiting in the queue (the socket's own buffer not included)
        self.overflowed = False
        self.closed = False
        self.write_now: Callable[[bytes], bool] = lambda data: False
        self.buffered: Callable[[], int] = lambda: 0
        self._queue_size = queue_size
        self._queue_bytes = queue_bytes
        self._unauthenticated_bytes = unauthenticated_bytes
        self._budget = budget
        self._on_overflow = on_overflow

    @property
    def subscriber_id(self) -> str:
        return self.session_id

    @property
    def identity(self) -> Identity | None:
        return self._identity

    @identity.setter
    def identity(self, identity: Identity | None) -> None:
        self._identity = identity
        if identity is not None:
            self.proven = True

    @property
    def proven(self) -> bool:
        return self._proven

    @proven.setter
    def proven(self, value: bool) -> None:
        if value and not self._proven:
            self._proven = True
            if self._on_proven is not None:
                self._on_proven(self)

    def on_proven(self, callback: Callable[[Session], None]) -> None:
        """`callback(session)` once, when the connection first proves a credential."""
        self._on_proven = callback

    @property
    def byte_limit(self) -> int:
        return self._queue_bytes if self.proven else self._unauthenticated_bytes

    @property
    def pending_messages(self) -> int:
        return len(self._outbox) if self._outbox else 0

    def send(self, text: str | bytes) -> bool:
        if self.overflowed or self.closed:
            return False
        data = text.encode() if isinstance(text, str) else text
        if not self._outbox and self.write_now(data):
            return True
        size = len(data)
        pending = self.queued_bytes + self.buffered()
        over_own = pending + size > self.byte_limit and (pending > 0 or not self.proven)
        if over_own or self.pending_messages >= self._queue_size or not self._reserve(size):
            self.overflow()
            return False
        if self._outbox is None:
            self._outbox = deque()
        self._outbox.append(data)
        self.queued_bytes += size
        return True

    def flush(self) -> None:
        """Write what is queued while the socket takes it (the transport calls this when
        its buffer has drained)."""
        outbox = self._outbox
        while outbox:
            data = outbox[0]
            if not self.write_now(data):
                return
            outbox.popleft()
            self.sent(len(data))
        self._outbox = None
        self._wake_drained()

    def _reserve(self, size: int) -> bool:
        return self._budget is None or self._budget.reserve(size)

    def sent(self, size: int) -> None:
        """`size` queued bytes were handed to the socket: they no longer count as queued."""
        self.queued_bytes = max(0, self.queued_bytes - size)
        if self._budget is not None:
            self._budget.release(size)

    def overflow(self) -> None:
        if self.overflowed:
            return
        self.overflowed = True
        self.discard_queue()
        self._on_overflow(self)

    def discard_queue(self) -> None:
        """Drop what is queued (the connection is going away) and give its bytes back."""
        outbox, self._outbox = self._outbox, None
        if outbox:
            self.sent(sum(len(data) for data in outbox))
        self._wake_drained()

    async def drained(self) -> None:
        """Return once nothing is queued (bounded by the caller)."""
        if not self._outbox:
            return
        if self._drained is None:
            self._drained = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._drained)

    def _wake_drained(self) -> None:
        waiter, self._drained = self._drained, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close(self) -> None:
        """The connection ended: nothing more is queued or sent."""
        self.closed = True
        self.discard_queue()

    def deliver(self, event: Event, text: str) -> None:
        if self._identity is not None:
            self.send(text)


@dataclass(slots=True)
class CallContext:
    """What a method handler knows about its caller."""

    session: Session
    request_id: str
    identity: Identity | None = None
