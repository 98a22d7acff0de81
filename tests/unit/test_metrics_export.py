"""/metrics keeps the node's own figures as plain numbers and builds the Prometheus families
only when scraped: the text is byte for byte what prometheus_client's Gauge, Counter and
Histogram give for the same figures (names, help, types, samples, order, `_created`)."""

from __future__ import annotations

import re
import time

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from camera_service.metrics import LATENCY_BUCKETS, Metrics
from camera_service.rpc_stats import RpcCallStats

NOW = 1_700_000_000.25
LATENCIES = (0.0001, 0.0005, 0.002, 0.5, 99.0)


def _reference() -> bytes:
    """The same figures kept by prometheus_client's own wrappers (the code before)."""
    registry = CollectorRegistry()
    registry.register(RpcCallStats(LATENCY_BUCKETS))  # type: ignore[arg-type]  # duck-typed
    connections = Gauge(
        "camera_service_ws_connections", "Open WebSocket connections", registry=registry
    )
    opened = Counter(
        "camera_service_ws_connections_opened", "WebSocket connections opened", registry=registry
    )
    rejected = Counter(
        "camera_service_ws_handshakes_rejected",
        "Handshakes refused",
        ["reason"],
        registry=registry,
    )
    decisions = Counter(
        "camera_service_stream_auth_decisions",
        "MediaMTX authentication requests decided",
        ["action", "outcome"],
        registry=registry,
    )
    latency = Histogram(
        "camera_service_stream_auth_seconds",
        "Time to decide one MediaMTX authentication request",
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    Gauge("camera_service_uptime_seconds", "Seconds since start", registry=registry).set(0.0)
    Gauge("camera_service_process_rss_bytes", "Resident memory", registry=registry).set(1.0)
    connections.inc(2)
    connections.dec()
    opened.inc(2)
    for reason in ("origin", "cap", "origin"):
        rejected.labels(reason).inc()
    for labels in (("read", "allow"), ("other", "deny"), ("read", "allow")):
        decisions.labels(*labels).inc()
    for seconds in LATENCIES:
        latency.observe(seconds)
    return generate_latest(registry)


def _ours() -> bytes:
    metrics = Metrics()
    metrics.connection_opened()
    metrics.connection_opened()
    metrics.connection_closed()
    for reason in ("origin", "cap", "origin"):
        metrics.handshake_rejected(reason)
    for action, allowed in (("read", True), ("something-else", False), ("read", True)):
        metrics.stream_auth(action, allowed)
    for seconds in LATENCIES:
        metrics.stream_auth_latency(seconds)
    text = metrics.prometheus_text()
    return re.sub(rb"^(camera_service_process_rss_bytes) \S+$", rb"\1 1.0", text, flags=re.M)


def test_the_node_figures_read_as_prometheus_clients_own_metrics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(time, "time", lambda: NOW)
    monkeypatch.setattr(time, "monotonic", lambda: 5.0)
    assert _ours() == _reference()
