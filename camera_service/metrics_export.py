"""The /metrics text: the node's figures (camera_service/metrics.py keeps them as plain
numbers) and the added collectors, as Prometheus families in the text exposition format.

Imported at the first scrape (``Metrics.prometheus_text``): prometheus_client stays out of
nodes nobody scrapes. The families are those prometheus_client's Gauge, Counter and
Histogram would expose for the same figures, in the same order, with their ``_created``
series (unless ``PROMETHEUS_DISABLE_CREATED_SERIES`` is set, as prometheus_client does)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from camera_service.rpc_stats import le_label

if TYPE_CHECKING:
    from camera_service.metrics import LabelledCounts, LatencyHistogram, Metrics

USE_CREATED = os.environ.get("PROMETHEUS_DISABLE_CREATED_SERIES", "False").lower() not in (
    "true",
    "1",
    "t",
)


def prometheus_text(metrics: Metrics) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_NodeFigures(metrics))
    return generate_latest(registry)


class _NodeFigures(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def collect(self) -> Iterator[Metric]:
        m = self._m
        yield from m.calls.collect()
        yield GaugeMetricFamily(
            "camera_service_ws_connections",
            "Open WebSocket connections",
            value=float(m.open_connections),
        )
        yield CounterMetricFamily(
            "camera_service_ws_connections_opened",
            "WebSocket connections opened",
            value=float(m.total_connections),
            created=m.connections_created if USE_CREATED else None,
        )
        yield _labelled(
            "camera_service_ws_handshakes_rejected", "Handshakes refused", ["reason"], m.rejected
        )
        yield _labelled(
            "camera_service_stream_auth_decisions",
            "MediaMTX authentication requests decided",
            ["action", "outcome"],
            m.stream_auth_decisions,
        )
        yield _histogram(
            "camera_service_stream_auth_seconds",
            "Time to decide one MediaMTX authentication request",
            m.stream_auth_seconds,
        )
        yield GaugeMetricFamily(
            "camera_service_uptime_seconds", "Seconds since start", value=m.uptime()
        )
        yield GaugeMetricFamily(
            "camera_service_process_rss_bytes", "Resident memory", value=m.rss_bytes()
        )
        for collector in m.collectors:
            yield from collector.collect()


def _labelled(name: str, doc: str, labels: list[str], counts: LabelledCounts) -> Metric:
    family = CounterMetricFamily(name, doc, labels=labels)
    for values, count in counts.counts.items():
        created = counts.created[values] if USE_CREATED else None
        family.add_metric(list(values), count, created=created)
    return family


def _histogram(name: str, doc: str, histogram: LatencyHistogram) -> Metric:
    family = Metric(name, doc, "histogram")
    cumulative = 0.0
    for bound, count in zip(histogram.bounds, histogram.buckets, strict=True):
        cumulative += count
        family.add_sample(name + "_bucket", {"le": le_label(bound)}, cumulative)
    family.add_sample(name + "_count", {}, cumulative)
    family.add_sample(name + "_sum", {}, histogram.total)
    if USE_CREATED:
        family.add_sample(name + "_created", {}, histogram.created)
    return family
