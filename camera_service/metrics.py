"""Process and RPC metrics: Prometheus collectors for /metrics, figures for get_metrics."""

from __future__ import annotations

import os
import time
from collections import Counter, deque
from typing import Any

import psutil
from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client import Counter as PromCounter

from camera_service.rpc_stats import RpcCallStats

_STREAM_AUTH_ACTIONS = frozenset({"publish", "read", "playback", "api", "metrics", "pprof"})
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


class Metrics:
    def __init__(self, window: int = 2048) -> None:
        self.started = time.time()
        self._started_mono = time.monotonic()
        self.registry = CollectorRegistry()
        self._calls = RpcCallStats(LATENCY_BUCKETS)
        self.registry.register(self._calls)
        self._connections = Gauge(
            "camera_service_ws_connections", "Open WebSocket connections", registry=self.registry
        )
        self._connections_total = PromCounter(
            "camera_service_ws_connections_opened",
            "WebSocket connections opened",
            registry=self.registry,
        )
        self._rejected = PromCounter(
            "camera_service_ws_handshakes_rejected",
            "Handshakes refused",
            ["reason"],
            registry=self.registry,
        )
        self._stream_auth = PromCounter(
            "camera_service_stream_auth_decisions",
            "MediaMTX authentication requests decided",
            ["action", "outcome"],
            registry=self.registry,
        )
        self._stream_auth_latency = Histogram(
            "camera_service_stream_auth_seconds",
            "Time to decide one MediaMTX authentication request",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        uptime = Gauge(
            "camera_service_uptime_seconds", "Seconds since start", registry=self.registry
        )
        uptime.set_function(self.uptime)
        self._rss = Gauge(
            "camera_service_process_rss_bytes", "Resident memory", registry=self.registry
        )
        self._rss.set_function(lambda: float(self._process.memory_info().rss))
        self._recent: deque[float] = deque(maxlen=window)
        self.by_method: Counter[str] = Counter()
        self.by_error: Counter[int] = Counter()
        self.open_connections = 0
        self.total_connections = 0
        self.total_requests = 0
        self._process = psutil.Process(os.getpid())
        self._process.cpu_percent(None)

    def uptime(self) -> float:
        return time.monotonic() - self._started_mono

    def connection_opened(self) -> None:
        self.open_connections += 1
        self.total_connections += 1
        self._connections.inc()
        self._connections_total.inc()

    def connection_closed(self) -> None:
        self.open_connections -= 1
        self._connections.dec()

    def handshake_rejected(self, reason: str) -> None:
        self._rejected.labels(reason).inc()

    def stream_auth(self, action: str, allowed: bool) -> None:
        action = action if action in _STREAM_AUTH_ACTIONS else "other"
        self._stream_auth.labels(action, "allow" if allowed else "deny").inc()

    def stream_auth_latency(self, seconds: float) -> None:
        self._stream_auth_latency.observe(seconds)

    def observe(self, method: str, seconds: float, error_code: int | None) -> None:
        self.total_requests += 1
        self.by_method[method] += 1
        self._recent.append(seconds)
        outcome = "ok" if error_code is None else str(error_code)
        if error_code is not None:
            self.by_error[error_code] += 1
        self._calls.observe(method, seconds, outcome)

    def latency_ms(self) -> dict[str, float]:
        values = sorted(self._recent)
        return {
            "p50": round(percentile(values, 0.50) * 1000, 3),
            "p95": round(percentile(values, 0.95) * 1000, 3),
            "p99": round(percentile(values, 0.99) * 1000, 3),
            "samples": len(values),
        }

    def system(self) -> dict[str, Any]:
        proc = self._process
        with proc.oneshot():
            memory = proc.memory_info()
            return {
                "pid": proc.pid,
                "cpu_percent": proc.cpu_percent(None),
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
        return generate_latest(self.registry)
