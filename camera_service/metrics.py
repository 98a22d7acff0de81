"""Process and RPC metrics: the figures of /metrics and get_metrics."""

from __future__ import annotations

import os
import time
from bisect import bisect_left
from collections import Counter, deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

from camera_service.cpu_baseline import ProcessCpuBaseline
from camera_service.rpc_stats import RpcCallStats

if TYPE_CHECKING:
    import psutil
    from prometheus_client.metrics_core import Metric

_STREAM_AUTH_ACTIONS = frozenset({"publish", "read", "playback", "api", "metrics", "pprof"})
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


class LabelledCounts:
    """A labelled Prometheus counter as plain numbers: count and creation time per label
    values, in first-seen order (what prometheus_client's children expose)."""

    __slots__ = ("counts", "created")

    def __init__(self) -> None:
        self.counts: dict[tuple[str, ...], float] = {}
        self.created: dict[tuple[str, ...], float] = {}

    def inc(self, *labels: str) -> None:
        if labels not in self.counts:
            self.counts[labels] = 0.0
            self.created[labels] = time.time()
        self.counts[labels] += 1.0


class LatencyHistogram:
    """An unlabelled Prometheus histogram as plain numbers (per-bucket counts, sum)."""

    __slots__ = ("bounds", "buckets", "created", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = (*(float(bound) for bound in bounds), float("inf"))
        self.buckets = [0.0] * len(self.bounds)
        self.total = 0.0
        self.created = time.time()

    def observe(self, seconds: float) -> None:
        self.total += seconds
        self.buckets[bisect_left(self.bounds, seconds)] += 1.0


class FamilySource(Protocol):
    """What /metrics asks for Prometheus families when it is scraped (a collector)."""

    def collect(self) -> Iterator[Metric]: ...


class Metrics:
    """The node's own figures as plain numbers, turned into Prometheus text only when
    /metrics is scraped (camera_service/metrics_export.py, imported then): prometheus_client
    and its exposition helpers (~1.6 MB of RSS) stay out of nodes nobody scrapes."""

    def __init__(self, window: int = 2048) -> None:
        self.started = time.time()
        self._started_mono = time.monotonic()
        self.calls = RpcCallStats(LATENCY_BUCKETS)
        self.collectors: list[FamilySource] = []
        self.connections_created = time.time()
        self.rejected = LabelledCounts()  # by reason
        self.stream_auth_decisions = LabelledCounts()  # by action, outcome
        self.stream_auth_seconds = LatencyHistogram(LATENCY_BUCKETS)
        self._recent: deque[float] = deque(maxlen=window)
        self.by_method: Counter[str] = Counter()
        self.by_error: Counter[int] = Counter()
        self.open_connections = 0
        self.total_connections = 0
        self.total_requests = 0
        # psutil is imported at the first call that reports usage (cpu_baseline.py).
        self._cpu_baseline: ProcessCpuBaseline | None = ProcessCpuBaseline()
        self._psutil_process: psutil.Process | None = None

    def add_collector(self, collector: FamilySource) -> None:
        """Families exposed after the node's own, in the order added."""
        self.collectors.append(collector)

    @property
    def _process(self) -> psutil.Process:
        if self._psutil_process is None:
            import psutil

            self._psutil_process = psutil.Process(os.getpid())
        return self._psutil_process

    def _cpu_percent(self) -> float:
        """Percent of one core since the previous call (the first: since start)."""
        cpu = self._process.cpu_percent(None)  # the first call only primes psutil
        if self._cpu_baseline is not None:
            cpu, self._cpu_baseline = self._cpu_baseline.percent(), None
        return cpu

    def rss_bytes(self) -> float:
        return float(self._process.memory_info().rss)

    def uptime(self) -> float:
        return time.monotonic() - self._started_mono

    def connection_opened(self) -> None:
        self.open_connections += 1
        self.total_connections += 1

    def connection_closed(self) -> None:
        self.open_connections -= 1

    def handshake_rejected(self, reason: str) -> None:
        self.rejected.inc(reason)

    def stream_auth(self, action: str, allowed: bool) -> None:
        action = action if action in _STREAM_AUTH_ACTIONS else "other"
        self.stream_auth_decisions.inc(action, "allow" if allowed else "deny")

    def stream_auth_latency(self, seconds: float) -> None:
        self.stream_auth_seconds.observe(seconds)

    def observe(self, method: str, seconds: float, error_code: int | None) -> None:
        self.total_requests += 1
        self.by_method[method] += 1
        self._recent.append(seconds)
        outcome = "ok" if error_code is None else str(error_code)
        if error_code is not None:
            self.by_error[error_code] += 1
        self.calls.observe(method, seconds, outcome)

    def latency_ms(self) -> dict[str, float]:
        values = sorted(self._recent)
        return {
            "p50": round(percentile(values, 0.50) * 1000, 3),
            "p95": round(percentile(values, 0.95) * 1000, 3),
            "p99": round(percentile(values, 0.99) * 1000, 3),
            "samples": len(values),
        }

    def system(self) -> dict[str, Any]:
        import psutil

        proc = self._process
        with proc.oneshot():
            memory = proc.memory_info()
            return {
                "pid": proc.pid,
                "cpu_percent": self._cpu_percent(),
                "rss_bytes": memory.rss,
                "threads": proc.num_threads(),
                "open_fds": proc.num_fds(),
                "uptime": round(self.uptime(), 3),
                "load_average": list(os.getloadavg()),
                "system_memory_percent": psutil.virtual_memory().percent,
            }

    def rpc(self) -> dict[str, Any]:
        return {
            "total_requests": self.total_requests,
            "requests_by_method": dict(self.by_method),
            "errors_by_code": {str(code): n for code, n in self.by_error.items()},
            "open_connections": self.open_connections,
            "total_connections": self.total_connections,
            "latency_ms": self.latency_ms(),
        }

    def prometheus_text(self) -> bytes:
        # Imported at the first scrape, see the class's doc.
        from camera_service.metrics_export import prometheus_text

        return prometheus_text(self)
