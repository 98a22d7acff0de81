"""Admission rules, rate-limited logging and the accept-error handler (no sockets)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from camera_service.resources import ACCEPT_ERROR, install_accept_error_handler
from camera_service.transport.admission import (
    AddressCap,
    RateLimitedLog,
    Slot,
    SlotLimits,
    WaitingHeads,
    slot_decision,
)
from tests.support.clock import ManualClock


def test_address_cap_counts_per_address_and_in_total() -> None:
    cap = AddressCap(per_address=2, total=3)
    assert cap.admit("a") and cap.admit("a")
    assert not cap.admit("a")
    assert cap.admit("b")
    assert not cap.admit("c")  # total reached
    cap.release("a")
    assert cap.admit("c")
    assert cap.count("a") == 1 and cap.open == 3


LIMITS = SlotLimits(max_connections=10, reserved_slots=3, max_unauthenticated_per_address=4)


@pytest.mark.parametrize(
    ("open_total", "unauthenticated", "from_address", "evictable", "expected"),
    [
        (0, 0, 0, False, Slot.ADMIT),
        (6, 6, 3, True, Slot.ADMIT),
        (7, 3, 4, True, Slot.REFUSE_ADDRESS),  # this address holds its share
        (7, 7, 1, True, Slot.EVICT_AND_ADMIT),  # the unauthenticated share (10 - 3) is full
        (7, 7, 1, False, Slot.REFUSE_FULL),  # ... and nobody can make room
        (10, 2, 0, True, Slot.EVICT_AND_ADMIT),  # every slot taken, two of them unproven
        (10, 0, 0, False, Slot.REFUSE_FULL),  # every slot held by authenticated clients
    ],
)
def test_slot_decision(
    open_total: int, unauthenticated: int, from_address: int, evictable: bool, expected: Slot
) -> None:
    assert slot_decision(LIMITS, open_total, unauthenticated, from_address, evictable) is expected


def test_unauthenticated_share_is_never_zero() -> None:
    assert SlotLimits(5, 50, 1).unauthenticated_share == 1


def test_rate_limited_log_reports_how_many_it_stood_for(caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock()
    limited = RateLimitedLog(logging.getLogger("test.limited"), interval=10, clock=clock)
    with caplog.at_level(logging.WARNING, logger="test.limited"):
        assert limited.warning("k", "boom")
        assert not any(limited.warning("k", "boom") for _ in range(99))
        clock.advance(10)
        assert limited.warning("k", "boom")
    assert [r.repeated for r in caplog.records] == [0, 99]  # type: ignore[attr-defined]


def test_accept_errors_are_rate_limited_and_other_reports_pass(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.new_event_loop()
    seen: list[str] = []
    loop.set_exception_handler(lambda loop, context: seen.append(context["message"]))
    clock = ManualClock()
    limited = RateLimitedLog(logging.getLogger("test.accept"), interval=10, clock=clock)
    try:
        install_accept_error_handler(loop, limited)
        with caplog.at_level(logging.WARNING, logger="test.accept"):
            for _ in range(1000):
                loop.call_exception_handler(
                    {"message": ACCEPT_ERROR, "exception": OSError(24, "Too many open files")}
                )
        loop.call_exception_handler({"message": "something else"})
    finally:
        loop.close()
    assert len(caplog.records) == 1
    assert seen == ["something else"]


class _Conn:
    def __init__(self, name: str, gone: list[str]) -> None:
        self.name, self.gone = name, gone

    def shed(self) -> None:
        self.gone.append(self.name)


def test_waiting_heads_evicts_the_oldest_once_it_waited_a_second() -> None:
    clock = ManualClock()
    waiting = WaitingHeads(clock)
    gone: list[str] = []
    first, second, third = (_Conn(n, gone) for n in ("first", "second", "third"))
    waiting.add(first)
    clock.advance(0.5)
    waiting.add(second)
    waiting.add(third)
    assert not waiting.evict_oldest() and gone == []  # the oldest waited only 0.5 s
    clock.advance(0.6)
    waiting.discard(first)  # its head arrived: no longer waiting
    assert not waiting.evict_oldest()  # second waited 0.6 s
    clock.advance(0.5)
    assert waiting.evict_oldest() and gone == ["second"]
    assert waiting.evict_oldest() and gone == ["second", "third"]
    assert not waiting.evict_oldest()
