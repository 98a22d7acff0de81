from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from tests.support.daemon import RunningDaemon, running_daemon

SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


@pytest.mark.parametrize(
    ("path", "status", "body_status"),
    [
        ("/health", 200, "healthy"),
        ("/health/live", 200, "alive"),
        ("/health/ready", 200, "ready"),
        ("/health/system", 200, "healthy"),
    ],
)
async def test_health_endpoints(
    daemon: RunningDaemon, path: str, status: int, body_status: str
) -> None:
    async with aiohttp.ClientSession() as http, http.get(daemon.http_url + path) as response:
        assert response.status == status
        body = await response.json()
        assert body["status"] == body_status
        assert "timestamp" in body
        for header, value in SECURITY_HEADERS.items():
            assert response.headers[header] == value
        assert "Content-Security-Policy" in response.headers


async def test_health_summary_fields(daemon: RunningDaemon) -> None:
    async with aiohttp.ClientSession() as http, http.get(daemon.http_url + "/health") as response:
        body = await response.json()
    assert set(body) == {"status", "timestamp", "version", "uptime"}


async def test_unknown_component_is_404(daemon: RunningDaemon) -> None:
    async with aiohttp.ClientSession() as http, http.get(daemon.http_url + "/health/nope") as r:
        assert r.status == 404
        assert r.headers["X-Content-Type-Options"] == "nosniff"


async def test_metrics_prometheus_text_counts_calls(daemon: RunningDaemon) -> None:
    async with daemon.client() as client:
        await client.call("ping")
    async with aiohttp.ClientSession() as http, http.get(daemon.http_url + "/metrics") as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        text = await r.text()
    assert 'camera_service_rpc_requests_total{method="ping",outcome="ok"} 1.0' in text
    assert "camera_service_process_rss_bytes" in text


async def test_metrics_bearer_when_configured(tmp_path: Path) -> None:
    overrides = {"http": {"metrics_auth": "s3cret-token"}}
    async with running_daemon(tmp_path, overrides) as daemon, aiohttp.ClientSession() as http:
        async with http.get(daemon.http_url + "/metrics") as r:
            assert r.status == 401
        headers = {"Authorization": "Bearer s3cret-token"}
        async with http.get(daemon.http_url + "/metrics", headers=headers) as r:
            assert r.status == 200


async def test_ready_is_503_until_conditions_hold(daemon: RunningDaemon) -> None:
    gate = asyncio.Event()
    daemon.app.health.require_ready("test_gate", gate)
    async with aiohttp.ClientSession() as http:
        async with http.get(daemon.http_url + "/health/ready") as r:
            assert r.status == 503
            assert (await r.json()) == {
                "status": "not_ready",
                "timestamp": (await r.json())["timestamp"],
                "details": {"test_gate": False},
            }
        gate.set()
        async with http.get(daemon.http_url + "/health/ready") as r:
            assert r.status == 200


async def test_system_methods_results(daemon: RunningDaemon) -> None:
    async with daemon.client("admin") as client:
        info = await client.call("get_server_info")
        assert info["name"] == "camera-service" and info["api_version"] == "1.1"
        # Contract 1.1 shapes.
        assert info["supported_formats"] == ["fmp4", "mp4", "mkv", "jpg", "png"]
        assert info["formats"]["recording"] == ["fmp4", "mp4", "mkv"]
        status = await client.call("get_status")
        assert status["status"] in {"HEALTHY", "DEGRADED"}
        assert set(status["components"]) == {
            "websocket_server",
            "camera_monitor",
            "mediamtx",
            "storage",
            "ffmpeg",
        }
        assert status["components"]["websocket_server"] == "RUNNING"
        assert status["components"]["storage"] == "RUNNING"
        assert status["components"]["ffmpeg"] == "RUNNING"
        assert status["components"]["mediamtx"] == "STOPPED"
        assert status["component_details"]["websocket_server"]["details"]["listening"] is True
        system = await client.call("get_system_status")
        assert system["available_cameras"] == [] and system["camera_count"] == 0
        metrics = await client.call("get_metrics")
        assert metrics["system_metrics"]["rss_bytes"] > 10_000_000
        for key in ("cpu_usage", "memory_usage", "disk_usage"):
            value = metrics["system_metrics"][key]
            assert isinstance(value, float) and 0.0 <= value <= 100.0, key
        assert metrics["system_metrics"]["memory_usage"] > 0.0
        assert metrics["rpc_metrics"]["total_requests"] >= 3
        assert metrics["rpc_metrics"]["latency_ms"]["samples"] >= 3
        stats = await client.call("get_subscription_stats")
        assert sorted(stats["client_topics"]) == ["camera.*", "recording.*"]
        doc = await client.call("rpc.discover")
        names = {m["name"] for m in doc["methods"]}
        assert {"ping", "authenticate", "get_metrics", "subscribe_events"} <= names
        auth = next(m for m in doc["methods"] if m["name"] == "authenticate")
        assert auth["params"][0]["name"] == "auth_token" and auth["params"][0]["required"]


async def test_python_client_reads_the_api_1_1_shapes(daemon: RunningDaemon) -> None:
    async with daemon.client("admin") as client:
        info = await client.server_info()
        assert info["supported_formats"][:3] == info["formats"]["recording"]
        status = await client.status()
        assert set(status["components"]) == set(status["component_details"])
        assert status["component_details"]["ffmpeg"]["status"] == "healthy"
        system = await client.system_status()
        assert system["camera_count"] == len(system["available_cameras"])
        metrics = await client.system_metrics()
        assert {"cpu_usage", "memory_usage", "disk_usage"} <= set(metrics)
