"""MediaMTX health: a circuit breaker, jittered backoff and a periodic ``/v3/info`` probe.

* :class:`CircuitBreaker` lets request paths fail fast (``breaker.allow()``) instead of
  waiting for a timeout on every call while MediaMTX is down. Pure state machine with an
  injectable monotonic clock.
* :func:`backoff_delay` is exponential backoff with "equal jitter": the delay after the
  n-th consecutive failure lies in ``[d/2, d]`` with ``d = min(cap, base * 2**n)``, so
  probes spread out but never collapse to zero.
* :class:`MediaMTXMonitor` probes every ``interval`` seconds while MediaMTX is up and on
  the backoff schedule while it is down, feeds the breaker, and calls ``on_down(reason)``
  / ``on_up()`` once per transition (the first probe counts as a transition, so
  ``on_up`` also fires at start-up, which is when a reconcile is wanted).
* Start-up checks (:func:`check_version`, :func:`setup_hint`): a MediaMTX older than
  :data:`MIN_VERSION` counts as down, with the reason; an API that refuses connections
  (the stock ``mediamtx.yml`` has ``api: false``) or answers 401/403 (the API answers
  only loopback by default) gets a hint saying what to set, in the health detail and once
  in the log.
* ``started`` of ``/v3/info`` changes when MediaMTX restarts, even between two probes:
  :attr:`MediaMTXMonitor.started` exposes it for the path reconcile.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import logging
import math
import random
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from camera_service.mediamtx.client import MediaMTXClient, MediaMTXError, MediaMTXUnavailable
from camera_service.supervise import start_supervised

log = logging.getLogger(__name__)

Clock = Callable[[], float]
OnDown = Callable[[str], Awaitable[None] | None]
OnUp = Callable[[], Awaitable[None] | None]


#: Oldest MediaMTX release whose API and recorder behave as this integration expects.
MIN_VERSION = (1, 20, 0)
_VERSION_RE = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)")


def check_version(version: str | None) -> str | None:
    """Why ``version`` is not supported, or None (unparseable versions are accepted)."""
    match = _VERSION_RE.match(version or "")
    if match is None:
        return None
    found = tuple(int(part) for part in match.groups())
    if found == (0, 0, 0):  # development builds report v0.0.0
        return None
    if found < MIN_VERSION:
        oldest = "v" + ".".join(str(n) for n in MIN_VERSION)
        return f"MediaMTX {version} is older than {oldest}, the oldest release supported"
    return None


def setup_hint(error: MediaMTXError, api_url: str) -> str | None:
    """What to set in ``mediamtx.yml`` for a probe that failed like ``error``."""
    if error.status in (401, 403):
        return (
            f"MediaMTX refused the API request ({error.status}): allow this host the 'api' "
            "action in authInternalUsers of mediamtx.yml (by default only 127.0.0.1 and ::1 "
            "may use the API), or run camera-service on the MediaMTX host"
        )
    if isinstance(error, MediaMTXUnavailable) and "unexpected response" not in error.message:
        return (
            f"no API answer from {api_url}: set 'api: yes' and 'apiAddress' (host:port of "
            "mediamtx.api_url) in mediamtx.yml; the stock file has 'api: false' (a host "
            "that may not use the API gets 401, sometimes only after a few seconds)"
        )
    return None


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Classic three-state circuit breaker.

    * closed: calls pass; ``failure_threshold`` consecutive failures open it.
    * open: :meth:`allow` is False until ``reset_timeout`` seconds have passed, then the
      breaker is half-open.
    * half-open: one trial call is allowed; its success closes the breaker, its failure
      opens it again. A trial whose outcome is never recorded expires after another
      ``reset_timeout`` so the breaker cannot wedge.

    The MediaMTX monitor records every probe here, so the breaker also closes on a
    successful probe even when no caller is making trial calls.
    """

    def __init__(
        self,
        failure_threshold: int = 3,
        reset_timeout: float = 10.0,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        if reset_timeout <= 0:
            raise ValueError("reset_timeout must be > 0")
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial_started: float | None = None

    @property
    def state(self) -> BreakerState:
        """Current state; an open breaker turns half-open once ``reset_timeout`` passed."""
        if (
            self._state is BreakerState.OPEN
            and self._clock() - self._opened_at >= self.reset_timeout
        ):
            self._state = BreakerState.HALF_OPEN
            self._trial_started = None
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def allow(self) -> bool:
        """May a call to MediaMTX be attempted now? (Takes the trial slot when half-open.)"""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            return False
        now = self._clock()
        if self._trial_started is None or now - self._trial_started >= self.reset_timeout:
            self._trial_started = now
            return True
        return False

    def record_success(self) -> None:
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._trial_started = None

    def record_failure(self) -> None:
        self._failures += 1
        state = self.state
        if state is BreakerState.HALF_OPEN or (
            state is BreakerState.CLOSED and self._failures >= self.failure_threshold
        ):
            self._open()

    def _open(self) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = self._clock()
        self._trial_started = None

    def retry_after(self) -> float:
        """Seconds until an open breaker lets a trial through (0 when not open)."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self.reset_timeout - (self._clock() - self._opened_at))

    def snapshot(self) -> dict[str, Any]:
        return {
            "state": str(self.state),
            "consecutive_failures": self._failures,
            "failure_threshold": self.failure_threshold,
            "retry_after": round(self.retry_after(), 3),
        }


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Delay before retry number ``attempt`` (0-based): equal-jitter exponential backoff."""
    if base <= 0 or cap <= 0:
        raise ValueError("base and cap must be > 0")
    ceiling = min(cap, math.ldexp(base, min(max(attempt, 0), 62)))  # base * 2**attempt
    half = ceiling / 2
    jitter = rng.uniform(0, half) if rng is not None else random.uniform(0, half)
    return half + jitter


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


class MonitorStatus(enum.StrEnum):
    UNKNOWN = "unknown"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


class MediaMTXMonitor:
    """Periodic ``/v3/info`` probe with backoff, breaker and up/down hooks.

    Hooks may be plain functions or coroutine functions; they run in the monitor task in
    transition order, and an exception in a hook is logged, never fatal. Keep them short
    (spawn a task for long work): the next probe waits for them.
    """

    def __init__(
        self,
        client: MediaMTXClient,
        *,
        interval: float = 5.0,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        probe_timeout: float = 2.0,
        breaker: CircuitBreaker | None = None,
        on_down: OnDown | None = None,
        on_up: OnUp | None = None,
        wall_clock: Clock = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._client = client
        self.interval = interval
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.probe_timeout = probe_timeout
        self.breaker = breaker or CircuitBreaker()
        self.on_down = on_down
        self.on_up = on_up
        self._wall_clock = wall_clock
        self._rng = rng or random.Random()
        self._status = MonitorStatus.UNKNOWN
        self._failures = 0
        self._last_ok: float | None = None
        self._last_error: str | None = None
        self._last_error_at: float | None = None
        self._version: str | None = None
        self.started: str | None = None
        self.hint: str | None = None
        self._hints_logged: set[str] = set()
        self._next_delay: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    # -- state -------------------------------------------------------------------------

    @property
    def is_up(self) -> bool:
        return self._status is MonitorStatus.HEALTHY

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def status(self) -> dict[str, Any]:
        """Detail for ``GET /health/mediamtx``."""
        return {
            "status": str(self._status),
            "api_url": self._client.base_url,
            "version": self._version,
            "started": self.started,
            "hint": self.hint,
            "last_ok": _iso(self._last_ok),
            "last_error": self._last_error,
            "last_error_at": _iso(self._last_error_at),
            "consecutive_failures": self._failures,
            "next_probe_in": None if self._next_delay is None else round(self._next_delay, 3),
            "breaker": self.breaker.snapshot(),
        }

    # -- probing -----------------------------------------------------------------------

    async def probe_once(self) -> bool:
        """Probe now, update state and breaker, fire hooks on a transition."""
        try:
            info = await self._client.info(request_timeout=self.probe_timeout)
        except MediaMTXError as exc:
            self._set_hint(setup_hint(exc, self._client.base_url))
            await self._failed(exc.message or exc.__class__.__name__)
            return False
        self._version = info.version
        unsupported = check_version(info.version)
        if unsupported is not None:
            self._set_hint(f"install MediaMTX from its official releases ({unsupported})")
            await self._failed(unsupported)
            return False
        self._set_hint(None)
        self.started = info.started
        await self._succeeded()
        return True

    def _set_hint(self, hint: str | None) -> None:
        self.hint = hint
        if hint is not None and hint not in self._hints_logged:
            self._hints_logged.add(hint)
            log.error("MediaMTX setup: %s", hint)

    async def _succeeded(self) -> None:
        previous = self._status
        self._status = MonitorStatus.HEALTHY
        self._failures = 0
        self._last_ok = self._wall_clock()
        self.breaker.record_success()
        if previous is not MonitorStatus.HEALTHY:
            log.info("MediaMTX is up (%s)", self._version or "unknown version")
            await self._call_hook(self.on_up)

    async def _failed(self, reason: str) -> None:
        previous = self._status
        self._status = MonitorStatus.UNHEALTHY
        self._failures += 1
        self._last_error = reason
        self._last_error_at = self._wall_clock()
        self.breaker.record_failure()
        if previous is not MonitorStatus.UNHEALTHY:
            log.warning("MediaMTX is down: %s", reason)
            await self._call_hook(self.on_down, reason)

    async def _call_hook(
        self, hook: Callable[..., Awaitable[None] | None] | None, *args: str
    ) -> None:
        if hook is None:
            return
        try:
            result = hook(*args)
            if inspect.isawaitable(result):
                await result
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("MediaMTX monitor hook %r failed", hook)

    def next_delay(self) -> float:
        """Seconds until the next probe given the current state."""
        if self._failures == 0:
            return self.interval
        return backoff_delay(self._failures - 1, self.backoff_base, self.backoff_cap, self._rng)

    def trigger(self) -> None:
        """Probe as soon as possible (e.g. after a caller saw a connection error)."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            await self.probe_once()
            self._next_delay = self.next_delay()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._next_delay)

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start the probe loop (the first probe runs immediately). Idempotent."""
        if self.running:
            return
        self._wake = asyncio.Event()
        self._task = start_supervised("mediamtx-monitor", self._run)

    async def stop(self) -> None:
        """Cancel the probe loop and wait for it to finish. Idempotent."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # stop() itself was cancelled: do not swallow that
        finally:
            self._next_delay = None
