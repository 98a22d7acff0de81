"""RPC call stats exposed as Prometheus families: the same series prometheus_client's own
Counter and Histogram would give, parsed back with its parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from camera_service.metrics import LATENCY_BUCKETS, Metrics


def test_counts_buckets_sum_and_count_parse_back() -> None:
    metrics = Metrics()
    for seconds in (0.0001, 0.0005, 0.003, 0.7):
        metrics.observe("ping", seconds, None)
    metrics.observe("ping", 20.0, -32001)
    metrics.observe("get_camera_list", 0.002, None)
    families = {f.name: f for f in text_string_to_metric_families(metrics.prometheus_text().decode())}
    requests = {
        (s.labels["method"], s.labels["outcome"]): s.value
        for s in families["camera_service_rpc_requests"].samples
        if s.name.endswith("_total")
    }
    assert requests == {("ping", "ok"): 4, ("ping", "-32001"): 1, ("get_camera_list", "ok"): 1}
    ping = {
        s.labels.get("le", s.name): s.value
        for s in families["camera_service_rpc_latency_seconds"].samples
        if s.labels["method"] == "ping"
    }
    assert ping["0.0005"] == 2  # an observation equal to a bound counts in that bucket
    assert ping["0.005"] == 3
    assert ping["1.0"] == 4
    assert ping["10.0"] == 4
    assert ping["+Inf"] == 5
    assert ping["camera_service_rpc_latency_seconds_count"] == 5
    assert abs(ping["camera_service_rpc_latency_seconds_sum"] - 20.7036) < 1e-9
    assert len([k for k in ping if k[0].isdigit()]) == len(LATENCY_BUCKETS)
