"""Per-connection state: identity, role, expiry, subscriptions' id, rate limit, send queue."""

from __future__ import annotations

import asyncio
import time
import uuid
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


class Session:
    """One client connection. Outgoing text goes through a bounded queue drained by the
    transport; when it is full the session is marked overflowed and `on_overflow` runs once.

    `write_now` (set by the transport) writes a frame at once when nothing is queued or being
    sent, which keeps order and skips a task wake-up per message; it declines (False) when the
    socket's buffer is full, and the message is queued as usual."""

    def __init__(
        self,
        remote: str,
        queue_size: int,
        bucket: TokenBucket | None,
        on_overflow: Callable[[Session], None] = lambda session: None,
    ) -> None:
        self.session_id = uuid.uuid4().hex
        self.remote = remote
        # The server address this client connected to (never its Host header), for links.
        self.host: str | None = None
        self.identity: Identity | None = None
        self.bucket = bucket
        self.outbox: asyncio.Queue[str] = asyncio.Queue(queue_size)
        self.overflowed = False
        self.writer_busy = False
        self.write_now: Callable[[str], bool] = lambda text: False
        self._on_overflow = on_overflow

    @property
    def subscriber_id(self) -> str:
        return self.session_id

    def send(self, text: str) -> bool:
        if self.overflowed:
            return False
        if not self.writer_busy and self.outbox.empty() and self.write_now(text):
            return True
        try:
            self.outbox.put_nowait(text)
        except asyncio.QueueFull:
            self.overflowed = True
            self._on_overflow(self)
            return False
        return True

    def deliver(self, event: Event, text: str) -> None:
        if self.identity is not None:
            self.send(text)


@dataclass(slots=True)
class CallContext:
    """What a method handler knows about its caller."""

    session: Session
    request_id: str
    identity: Identity | None = None
