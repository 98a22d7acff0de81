"""/metrics per camera, storage, MediaMTX and events, parsed with prometheus-client's parser."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.daemon import RunningDaemon, running_daemon

pytestmark = pytest.mark.timeout(60)

CAMERAS = {
    "cameras": {
        "sources": [
            {"id": "cam0", "input_format": "lavfi", "input": "testsrc2=size=320x240:rate=10"},
            {"id": "cam1", "input_format": "lavfi", "input": "testsrc=size=160x120:rate=10"},
        ]
    }
}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[RunningDaemon]:
    async with running_daemon(tmp_path, CAMERAS) as running:
        yield running


async def scrape(daemon: RunningDaemon) -> tuple[Samples, dict[str, str]]:
    async with aiohttp.ClientSession() as http, http.get(f"{daemon.http_url}/metrics") as r:
        assert r.status == 200
        text = await r.text()
    samples: Samples = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples, types


def cam(name: str, camera: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, (("camera", camera),)


async def test_camera_storage_and_event_figures(daemon: RunningDaemon) -> None:
    headers = {"X-API-Key": daemon.keys["viewer"]}
    async with daemon.client("operator") as rpc, aiohttp.ClientSession() as http:
        await rpc.call("take_snapshot", {"device": "cam0"})
        await rpc.call("take_snapshot", {"device": "cam0"})
        async with http.get(f"{daemon.http_url}/cameras/cam1/snapshot.jpg", headers=headers) as r:
            assert r.status == 200
        await rpc.call("start_recording", {"device": "cam1"})
        during, _ = await scrape(daemon)
        stopped = await rpc.call("stop_recording", {"device": "cam1"})
        async with http.get(
            f"{daemon.http_url}/cameras/cam0/stream.mjpg", headers=headers
        ) as stream:
            await stream.content.readexactly(64)  # the viewer is attached
            samples, types = await scrape(daemon)
    assert during[cam("camera_service_camera_recording", "cam1")] == 1
    assert samples[cam("camera_service_camera_recording", "cam1")] == 0
    assert samples[cam("camera_service_camera_status", "cam0")] == 1
    assert samples[cam("camera_service_camera_snapshots_total", "cam0")] == 2
    assert samples[cam("camera_service_camera_snapshots_total", "cam1")] == 0
    assert samples[cam("camera_service_camera_snapshot_url_requests_total", "cam1")] == 1
    written = samples[cam("camera_service_camera_recorded_bytes_total", "cam1")]
    assert 0 < written <= stopped["file_size"]
    assert samples[cam("camera_service_camera_mjpeg_viewers", "cam0")] == 1
    assert samples[cam("camera_service_camera_ffmpeg_failures_total", "cam0")] == 0
    assert cam("camera_service_camera_ffmpeg_restarts_total", "cam0") in samples
    assert types["camera_service_camera_snapshots"] == "counter"
    assert types["camera_service_camera_status"] == "gauge"
    total = samples[("camera_service_storage_total_bytes", ())]
    used = samples[("camera_service_storage_used_bytes", ())]
    free = samples[("camera_service_storage_free_bytes", ())]
    assert total > 0 and used + free <= total
    assert 0 <= samples[("camera_service_storage_used_percent", ())] <= 100
    events = {
        dict(k[1])["topic"]: v for k, v in samples.items() if k[0] == "camera_service_events_total"
    }
    assert events["snapshot.taken"] == 2 and events["recording.start"] == 1
    # Label cardinality: camera series carry the camera id and nothing else.
    for name, labels in samples:
        if name.startswith("camera_service_camera_"):
            assert [k for k, _ in labels] == ["camera"], (name, labels)
    # MediaMTX disabled: the gauge is declared without a sample; MQTT disabled: no series.
    assert "camera_service_mediamtx_up" in types
    assert ("camera_service_mediamtx_up", ()) not in samples
    assert not [n for n, _ in samples if n.startswith("camera_service_mqtt")]


async def test_a_forgotten_camera_has_no_series(daemon: RunningDaemon) -> None:
    url = "rtsp://127.0.0.1:9/none"
    async with daemon.client("operator") as rpc:
        await rpc.call("add_external_stream", {"stream_url": url, "stream_name": "door"})
        with_door, _ = await scrape(daemon)
        await rpc.call("remove_external_stream", {"stream_url": url})
    without, _ = await scrape(daemon)
    assert cam("camera_service_camera_status", "door") in with_door
    assert not [k for k in without if ("camera", "door") in k[1]]
