"""Camera methods and camera_status_update notifications over a real socket, with fake V4L2
devices plugged through the discovery seam."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from camera_service.client import CameraClient, RpcCallError
from tests.support.daemon import RunningDaemon, running_daemon
from tests.support.fake_devices import FakeEventSource, FakeProber, uvc_webcam

LAVFI = {
    "id": "lab0",
    "name": "Lab pattern",
    "input_format": "lavfi",
    "input": "testsrc2=size=320x240:rate=15",
    "exclusive": True,
}


@pytest.fixture
async def seamed(tmp_path: Path) -> AsyncIterator[tuple[RunningDaemon, FakeEventSource]]:
    prober = FakeProber()
    source = FakeEventSource(prober)
    source.plug(*uvc_webcam(0), announce=False)
    overrides = {"cameras": {"sources": [LAVFI], "forget_after": 300}}
    async with running_daemon(tmp_path, overrides, event_source=source, prober=prober) as daemon:
        await asyncio.wait_for(daemon.app.discovery.first_scan_done.wait(), 5)
        yield daemon, source


async def next_camera_note(client: CameraClient, device: str) -> dict[str, Any]:
    while True:
        note = await client.next_notification(timeout=5)
        if note["method"] == "camera_status_update" and note["params"]["device"] == device:
            return note["params"]


async def test_list_has_usb_and_configured_cameras_once_without_paths(seamed: Any) -> None:
    daemon, _ = seamed
    async with daemon.client("viewer") as client:
        listing = await client.call("get_camera_list")
    assert listing["total"] == 2 and listing["connected"] == 2
    by_id = {c["device"]: c for c in listing["cameras"]}
    assert set(by_id) == {"camera0", "lab0"}
    assert by_id["camera0"]["status"] == "CONNECTED"
    assert by_id["camera0"]["name"] == "HD Pro Webcam C920"
    assert by_id["lab0"]["resolution"] == "320x240"
    assert by_id["camera0"]["streams"] == {}
    assert "/dev/" not in str(listing)


async def test_status_and_capabilities(seamed: Any) -> None:
    daemon, _ = seamed
    async with daemon.client("viewer") as client:
        status = await client.call("get_camera_status", {"device": "camera0"})
        caps = await client.call("get_camera_capabilities", {"device": "camera0"})
    assert status["metrics"].keys() >= {"bytes_sent", "readers", "uptime"}
    assert "MJPG" in status["capabilities"]["formats"]
    assert caps["validation_status"] == "CONFIRMED"
    assert "1920x1080" in caps["resolutions"]
    assert caps["fps_options"]["1920x1080"]
    assert "/dev/" not in str(status) + str(caps)


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"device": "camera9"}, -32010),
        ({"device": "../etc"}, -32602),
        ({"device": ""}, -32602),
        ({}, -32602),
        ({"device": 5}, -32602),
    ],
)
async def test_bad_camera_ids(seamed: Any, params: dict[str, Any], code: int) -> None:
    daemon, _ = seamed
    async with daemon.client("viewer") as client:
        with pytest.raises(RpcCallError) as info:
            await client.call("get_camera_status", params)
    assert info.value.code == code
    if code == -32010:
        assert info.value.data == {"resource": "camera", "id": "camera9"}


async def test_plug_unplug_replug_notifications_keep_the_id(seamed: Any) -> None:
    daemon, source = seamed
    async with daemon.client("viewer") as client:
        capture, meta = uvc_webcam(2, port="4")
        source.plug(capture, meta)
        plugged = await next_camera_note(client, "camera2")
        assert plugged["topic"] == "camera.connected" and plugged["status"] == "CONNECTED"
        assert set(plugged) == {
            "device",
            "status",
            "name",
            "resolution",
            "fps",
            "streams",
            "recording",
            "topic",
        }
        source.unplug(capture.path, meta.path)
        gone = await next_camera_note(client, "camera2")
        assert (gone["topic"], gone["status"]) == ("camera.disconnected", "DISCONNECTED")
        listed = await client.call("get_camera_status", {"device": "camera2"})
        assert listed["status"] == "DISCONNECTED"
        source.plug(capture, meta)
        back = await next_camera_note(client, "camera2")
        assert back["status"] == "CONNECTED"


async def test_device_filter_and_topic_filter(seamed: Any) -> None:
    daemon, source = seamed
    async with daemon.client("viewer") as only_cam3, daemon.client("viewer") as no_cameras:
        await only_cam3.call("unsubscribe_events")
        result = await only_cam3.call(
            "subscribe_events", {"topics": ["camera.connected"], "filters": {"device": "camera3"}}
        )
        assert result["filters"] == {"device": ["camera3"]}
        await no_cameras.call("unsubscribe_events", {"topics": ["camera.*"]})
        source.plug(*uvc_webcam(5, port="6"))
        source.plug(*uvc_webcam(3, port="5"))
        note = await only_cam3.next_notification()
        assert note["params"]["device"] == "camera3"
        # The connection keeps its order: after a ping's answer, anything sent before it
        # has arrived.
        assert await no_cameras.call("ping") == "pong"
        assert no_cameras.pending_notifications() == 0


async def test_external_streams_persist_across_restart(tmp_path: Path) -> None:
    url = "rtsp://viewer:s3cret@192.0.2.10:554/stream1"
    async with running_daemon(tmp_path) as daemon, daemon.client("operator") as client:
        added = await client.call("add_external_stream", {"stream_url": url, "stream_name": "gate"})
        assert added["status"] == "ADDED"
        for bad in ("file:///etc/passwd", "javascript:alert(1)", "rtsp://"):
            with pytest.raises(RpcCallError) as info:
                await client.call("add_external_stream", {"stream_url": bad, "stream_name": "x1"})
            assert info.value.code == -32602
        # `all` is a MediaMTX-reserved path name, and cameras' paths are named by their id.
        with pytest.raises(RpcCallError) as reserved:
            await client.call(
                "add_external_stream", {"stream_url": "rtsp://192.0.2.11/s", "stream_name": "all"}
            )
        assert reserved.value.code == -32602
        assert (await client.call("get_camera_status", {"device": "gate"}))["status"] == "CONNECTED"
    async with running_daemon(tmp_path) as daemon, daemon.client("operator") as client:
        streams = await client.call("get_external_streams")
        assert streams["total_count"] == 1
        assert streams["external_streams"][0]["stream_url"] == url.replace("s3cret", "***")
        listing = await client.call("get_camera_list")
        assert "gate" in {c["device"] for c in listing["cameras"]}
        removed = await client.call("remove_external_stream", {"stream_url": url})
        assert removed["status"] == "REMOVED"
        with pytest.raises(RpcCallError) as info:
            await client.call("remove_external_stream", {"stream_url": url})
        assert info.value.code == -32010


async def test_system_status_and_ready_follow_discovery(seamed: Any) -> None:
    daemon, _ = seamed
    async with daemon.client("viewer") as client:
        status = await client.call("get_system_status")
        listing = await client.call("get_camera_list")
    assert status["status"] == "ready"
    # Contract 1.1: the ids of the connected cameras, and their count.
    connected = [c["device"] for c in listing["cameras"] if c["status"] == "CONNECTED"]
    assert status["available_cameras"] == connected and len(connected) == 2
    assert status["camera_count"] == 2
    assert status["discovery_active"] is True


async def test_unplugged_camera_is_forgotten_after_forget_after(seamed: Any) -> None:
    import time

    daemon, source = seamed
    async with daemon.client("viewer") as client:
        capture, meta = uvc_webcam(6, port="7")
        source.plug(capture, meta)
        await next_camera_note(client, "camera6")
        source.unplug(capture.path, meta.path)
        assert (await next_camera_note(client, "camera6"))["status"] == "DISCONNECTED"
        forgotten = daemon.app.cameras.expire(now=time.monotonic() + 301)
        assert [c.id for c in forgotten] == ["camera6"]
        note = await next_camera_note(client, "camera6")
        assert note["forgotten"] is True and note["topic"] == "camera.disconnected"
        with pytest.raises(RpcCallError) as info:
            await client.call("get_camera_status", {"device": "camera6"})
        assert info.value.code == -32010
