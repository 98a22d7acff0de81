"""Circuit breaker, backoff and the MediaMTX health monitor."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

from camera_service.mediamtx.client import MediaMTXClient, MediaMTXError, MediaMTXUnavailable
from camera_service.mediamtx.monitor import (
    BreakerState,
    CircuitBreaker,
    MediaMTXMonitor,
    backoff_delay,
    check_version,
    setup_hint,
)
from tests.support.clock import ManualClock as FakeClock
from tests.support.fake_mediamtx import FakeMediaMTX

WAIT = 5.0  # upper bound for any awaited event; tests finish far sooner


def state_of(breaker: CircuitBreaker) -> BreakerState:
    """Read the state through a call, so mypy does not narrow it across assertions."""
    return breaker.state


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def fake() -> AsyncIterator[FakeMediaMTX]:
    async with FakeMediaMTX() as server:
        yield server


@pytest.fixture
async def client(fake: FakeMediaMTX) -> AsyncIterator[MediaMTXClient]:
    async with MediaMTXClient(fake.url, timeout=1.0) as mtx:
        yield mtx


# -- circuit breaker (pure) --------------------------------------------------------------


def test_breaker_opens_after_threshold(clock: FakeClock) -> None:
    breaker = CircuitBreaker(failure_threshold=3, reset_timeout=10, clock=clock)
    for _ in range(2):
        breaker.record_failure()
        assert state_of(breaker) is BreakerState.CLOSED
        assert breaker.allow()
    breaker.record_failure()
    assert state_of(breaker) is BreakerState.OPEN
    assert not breaker.allow()
    assert breaker.retry_after() == 10
    clock.advance(4)
    assert breaker.retry_after() == 6
    assert not breaker.allow()


def test_success_resets_failure_count(clock: FakeClock) -> None:
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout=10, clock=clock)
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert state_of(breaker) is BreakerState.CLOSED


def test_half_open_allows_one_trial_then_closes_on_success(clock: FakeClock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=10, clock=clock)
    breaker.record_failure()
    clock.advance(10)
    assert state_of(breaker) is BreakerState.HALF_OPEN
    assert breaker.allow()
    assert not breaker.allow()  # only one trial at a time
    breaker.record_success()
    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.allow()
    assert breaker.snapshot()["consecutive_failures"] == 0


def test_half_open_failure_reopens(clock: FakeClock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=10, clock=clock)
    breaker.record_failure()
    clock.advance(10)
    assert breaker.allow()
    breaker.record_failure()
    assert state_of(breaker) is BreakerState.OPEN
    assert not breaker.allow()
    clock.advance(9.9)
    assert state_of(breaker) is BreakerState.OPEN
    clock.advance(0.1)
    assert state_of(breaker) is BreakerState.HALF_OPEN


def test_lost_trial_expires(clock: FakeClock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=5, clock=clock)
    breaker.record_failure()
    clock.advance(5)
    assert breaker.allow()
    clock.advance(4)
    assert not breaker.allow()
    clock.advance(1)
    assert breaker.allow()


def test_breaker_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(failure_threshold=0)
    with pytest.raises(ValueError):
        CircuitBreaker(reset_timeout=0)


# -- backoff (pure) ----------------------------------------------------------------------


def test_backoff_grows_within_jitter_bounds_and_caps() -> None:
    rng = random.Random(7)
    for attempt, ceiling in enumerate([1, 2, 4, 8, 10, 10, 10]):
        for _ in range(50):
            delay = backoff_delay(attempt, base=1, cap=10, rng=rng)
            assert ceiling / 2 <= delay <= ceiling
    assert backoff_delay(10_000, base=1, cap=3, rng=rng) <= 3


def test_backoff_is_jittered_and_reproducible() -> None:
    first = [backoff_delay(3, 1, 60, random.Random(1)) for _ in range(3)]
    assert first == [backoff_delay(3, 1, 60, random.Random(1)) for _ in range(3)]
    rng = random.Random(1)
    assert len({backoff_delay(3, 1, 60, rng) for _ in range(20)}) > 1
    with pytest.raises(ValueError):
        backoff_delay(0, 0, 1)


# -- monitor -----------------------------------------------------------------------------


async def test_breaker_follows_probes_with_injected_failures(
    fake: FakeMediaMTX, client: MediaMTXClient, clock: FakeClock
) -> None:
    breaker = CircuitBreaker(failure_threshold=3, reset_timeout=30, clock=clock)
    downs: list[str] = []
    ups: list[bool] = []
    monitor = MediaMTXMonitor(
        client, breaker=breaker, on_down=downs.append, on_up=lambda: ups.append(True)
    )
    assert await monitor.probe_once() is True
    assert ups == [True]

    fake.fail_next(3, status=500, message="injected", operation="info")
    for expected in (BreakerState.CLOSED, BreakerState.CLOSED, BreakerState.OPEN):
        assert await monitor.probe_once() is False
        assert state_of(breaker) is expected
    assert not breaker.allow()
    assert len(downs) == 1  # one transition, one hook call
    assert "injected" in downs[0]
    status = monitor.status()
    assert status["status"] == "unhealthy"
    assert status["consecutive_failures"] == 3
    assert status["breaker"]["state"] == "open"
    assert "injected" in status["last_error"]

    clock.advance(30)
    assert state_of(breaker) is BreakerState.HALF_OPEN
    assert await monitor.probe_once() is True
    assert state_of(breaker) is BreakerState.CLOSED
    assert ups == [True, True]
    assert monitor.status()["status"] == "healthy"
    assert monitor.status()["last_ok"].endswith("Z")


async def test_monitor_calls_on_down_and_on_up_across_an_outage(
    fake: FakeMediaMTX, client: MediaMTXClient
) -> None:
    up = asyncio.Event()
    down = asyncio.Event()
    reasons: list[str] = []

    async def on_up() -> None:
        up.set()

    def on_down(reason: str) -> None:
        reasons.append(reason)
        down.set()

    monitor = MediaMTXMonitor(
        client,
        interval=0.05,
        backoff_base=0.02,
        backoff_cap=0.1,
        probe_timeout=0.5,
        on_down=on_down,
        on_up=on_up,
    )
    await monitor.start()
    try:
        await asyncio.wait_for(up.wait(), WAIT)
        assert monitor.is_up
        up.clear()

        await fake.stop()
        await asyncio.wait_for(down.wait(), WAIT)
        assert not monitor.is_up
        assert len(reasons) == 1

        await fake.start()
        await asyncio.wait_for(up.wait(), WAIT)
        assert monitor.is_up
        assert monitor.status()["consecutive_failures"] == 0
    finally:
        await monitor.stop()
    assert not monitor.running


async def test_first_probe_failure_reports_down(client: MediaMTXClient, fake: FakeMediaMTX) -> None:
    await fake.stop()
    down = asyncio.Event()
    monitor = MediaMTXMonitor(client, interval=10, on_down=lambda _: down.set())
    await monitor.start()
    try:
        await asyncio.wait_for(down.wait(), WAIT)
        assert monitor.status()["status"] == "unhealthy"
    finally:
        await monitor.stop()


async def test_hook_errors_do_not_stop_the_monitor(
    fake: FakeMediaMTX, client: MediaMTXClient
) -> None:
    def broken_hook() -> None:
        raise RuntimeError("hook bug")

    monitor = MediaMTXMonitor(client, interval=0.02, on_up=broken_hook)
    await monitor.start()
    try:
        await fake.wait_for_request(lambda _: len(fake.requests_for("info")) >= 3, WAIT)
        assert monitor.running
        assert monitor.is_up
    finally:
        await monitor.stop()


async def test_trigger_probes_immediately(fake: FakeMediaMTX, client: MediaMTXClient) -> None:
    monitor = MediaMTXMonitor(client, interval=3600)
    await monitor.start()
    try:
        await fake.wait_for_request(lambda r: r.operation_id == "info", WAIT)
        monitor.trigger()
        await fake.wait_for_request(lambda _: len(fake.requests_for("info")) >= 2, WAIT)
    finally:
        await monitor.stop()


async def test_stop_cancels_an_in_flight_probe(fake: FakeMediaMTX, client: MediaMTXClient) -> None:
    fake.delay_next(1, 30, operation="info")
    monitor = MediaMTXMonitor(client, probe_timeout=30)
    await monitor.start()
    await monitor.start()  # idempotent: still one task
    await fake.wait_for_request(lambda r: r.operation_id == "info", WAIT)
    await asyncio.wait_for(monitor.stop(), 1.0)
    assert not monitor.running
    assert monitor.status()["status"] == "unknown"
    await monitor.stop()  # idempotent
    assert len(fake.requests_for("info")) == 1


async def test_next_delay_uses_interval_when_up_and_backoff_when_down(
    fake: FakeMediaMTX, client: MediaMTXClient
) -> None:
    monitor = MediaMTXMonitor(
        client, interval=5, backoff_base=1, backoff_cap=4, rng=random.Random(3)
    )
    await monitor.probe_once()
    assert monitor.next_delay() == 5
    fake.fail_next(4, operation="info")
    ceilings = []
    for _ in range(4):
        await monitor.probe_once()
        ceilings.append(monitor.next_delay())
    assert 0.5 <= ceilings[0] <= 1
    assert 1 <= ceilings[1] <= 2
    assert 2 <= ceilings[2] <= 4
    assert 2 <= ceilings[3] <= 4


def test_version_gate() -> None:
    assert check_version("v1.20.1") is None and check_version("v1.21.0") is None
    assert check_version("v0.0.0") is None  # development builds
    assert check_version("unknown") is None and check_version(None) is None
    assert "older than v1.20.0" in (check_version("v1.19.3") or "")


def test_setup_hints_say_what_to_set() -> None:
    refused = MediaMTXUnavailable("GET /v3/info: ClientConnectorError: connection refused")
    assert "api: yes" in (setup_hint(refused, "http://127.0.0.1:9997") or "")
    denied = setup_hint(MediaMTXError("HTTP 401", status=401), "http://10.0.0.2:9997")
    assert denied is not None and "authInternalUsers" in denied
    assert setup_hint(MediaMTXError("HTTP 500", status=500), "http://x") is None


async def test_old_mediamtx_counts_as_down_with_a_hint() -> None:
    async with FakeMediaMTX() as fake, MediaMTXClient(fake.url) as client:
        fake.version = "v1.15.0"
        monitor = MediaMTXMonitor(client)
        assert not await monitor.probe_once()
        status = monitor.status()
        assert status["status"] == "unhealthy" and "older than" in (status["last_error"] or "")
        assert "official releases" in (status["hint"] or "")
