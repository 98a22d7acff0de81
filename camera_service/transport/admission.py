"""Who may hold a connection: per-address TCP caps, and the WebSocket slot rules. No I/O.

`AddressCap` counts open TCP connections per client address (and in total) for one port; a
connection over either cap is dropped as soon as it is accepted, before it costs more than
its socket. `slot_decision` applies the WebSocket rules to a handshake: at most
`max_unauthenticated_per_address` unauthenticated connections per address, and at most
`max_connections - reserved_slots` unauthenticated connections in all, so the reserved slots
stay for clients that authenticate. When a newcomer finds the unauthenticated share full, the
oldest unauthenticated connection makes room for it: a client that authenticates promptly
always gets in, and one that just holds a slot does so only until someone needs it.
`WaitingHeads` keeps the HTTP connections still waiting for their first request head, so at
the total cap the one waiting longest can make room. `RateLimitedLog` keeps a flood from
turning into one log line per event.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol


class AddressCap:
    """Open connections per address and in total, against two caps (None: no total cap)."""

    def __init__(self, per_address: int, total: int | None = None) -> None:
        self.per_address = per_address
        self.total = total
        self._counts: Counter[str] = Counter()
        self._open = 0

    def admit(self, address: str) -> bool:
        if self._counts[address] >= self.per_address:
            return False
        if self.total is not None and self._open >= self.total:
            return False
        self._counts[address] += 1
        self._open += 1
        return True

    def release(self, address: str) -> None:
        count = self._counts[address] - 1
        if count > 0:
            self._counts[address] = count
        else:
            del self._counts[address]
        self._open = max(0, self._open - 1)

    def count(self, address: str) -> int:
        return self._counts.get(address, 0)

    @property
    def open(self) -> int:
        return self._open


EVICT_MIN_AGE_S = 1.0  # a connection still waiting for its head this young is not evicted


class Sheddable(Protocol):
    def shed(self) -> None:
        """Give up the connection now (its place in the cap is free at once)."""


class WaitingHeads:
    """Connections still waiting for their first request head, oldest first."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._since: dict[Sheddable, float] = {}
        self.clock = clock

    def add(self, connection: Sheddable) -> None:
        self._since[connection] = self.clock()

    def discard(self, connection: Sheddable) -> None:
        self._since.pop(connection, None)

    def evict_oldest(self) -> bool:
        """Drop the oldest waiting connection if it waited long enough; True when one went."""
        for connection, since in self._since.items():
            if self.clock() - since < EVICT_MIN_AGE_S:
                return False
            del self._since[connection]
            connection.shed()
            return True
        return False


class Slot(Enum):
    ADMIT = "admit"
    EVICT_AND_ADMIT = "evict"  # close the oldest unauthenticated connection, then admit
    REFUSE_ADDRESS = "address"  # this address holds its share of unauthenticated connections
    REFUSE_FULL = "capacity"  # every slot is held by an authenticated connection


@dataclass(frozen=True, slots=True)
class SlotLimits:
    max_connections: int
    reserved_slots: int
    max_unauthenticated_per_address: int

    @property
    def unauthenticated_share(self) -> int:
        return max(1, self.max_connections - self.reserved_slots)


def slot_decision(
    limits: SlotLimits, open_total: int, unauthenticated: int, from_address: int, evictable: bool
) -> Slot:
    """The handshake rule. `unauthenticated` and `from_address` count connections that have
    not authenticated yet (handshakes in progress included); `evictable`: there is an
    established unauthenticated connection that could make room."""
    if from_address >= limits.max_unauthenticated_per_address:
        return Slot.REFUSE_ADDRESS
    if open_total >= limits.max_connections or unauthenticated >= limits.unauthenticated_share:
        return Slot.EVICT_AND_ADMIT if evictable else Slot.REFUSE_FULL
    return Slot.ADMIT


class RateLimitedLog:
    """At most one line per `key` every `interval` seconds, with the count it stood for."""

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    def warning(self, key: str, message: str, *args: object) -> bool:
        """Log now (True) or count the event for the next line (False)."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._suppressed[key] += 1
            return False
        self._last[key] = now
        repeated = self._suppressed.pop(key, 0)
        self.logger.warning(message, *args, extra={"repeated": repeated, "limit_key": key})
        return True
