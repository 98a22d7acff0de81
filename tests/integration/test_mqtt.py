"""MQTT bridge against a real Mosquitto: retained state, discovery, commands, reconnects."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from camera_service.events import Event
from tests.support.daemon import RunningDaemon, running_daemon
from tests.support.mosquitto import (
    Broker,
    Watcher,
    broker,
    free_port,
    make_client_cert,
    make_tls_files,
    watching,
)

pytestmark = pytest.mark.timeout(90)

PREFIX = "camera-service/node-a"
CAMERAS = {
    "cameras": {
        "sources": [
            {
                "id": "cam0",
                "name": "Gate",
                "input_format": "lavfi",
                "input": "testsrc2=size=320x240:rate=10",
            },
            {"id": "cam1", "input_format": "lavfi", "input": "testsrc=size=160x120:rate=10"},
        ]
    }
}


def mqtt_overrides(url: str, **extra: Any) -> dict[str, Any]:
    mqtt = {"enabled": True, "url": url, "node_id": "node-a", "backoff_base": 0.2}
    mqtt.update({"backoff_max": 1.0, **extra})
    return {**CAMERAS, "mqtt": mqtt}


@pytest.fixture
async def mosquitto(tmp_path: Path) -> AsyncIterator[Broker]:
    async with broker(tmp_path) as running:
        yield running


@pytest.fixture
async def daemon(tmp_path: Path, mosquitto: Broker) -> AsyncIterator[RunningDaemon]:
    async with running_daemon(tmp_path, mqtt_overrides(mosquitto.url)) as running:
        assert running.app.mqtt is not None
        await asyncio.wait_for(running.app.mqtt.connected.wait(), 15)
        yield running


def config_topics(w: Watcher, node: str = "node-a") -> dict[str, dict[str, Any]]:
    return {
        t: json.loads(p)
        for t, p in w.last.items()
        if t.startswith("homeassistant/") and f"/{node}/" in t and p
    }


async def command(w: Watcher, client: aiomqtt.Client, camera: str, body: dict[str, Any]) -> Any:
    result_topic = f"{PREFIX}/cameras/{camera}/command/result"
    seen = len([1 for t, _ in w.history if t == result_topic])
    await client.publish(f"{PREFIX}/cameras/{camera}/command", json.dumps(body), qos=1)
    await w.wait_for(
        lambda w: len([1 for t, _ in w.history if t == result_topic]) > seen, what=result_topic
    )
    return json.loads([p for t, p in w.history if t == result_topic][-1])


async def test_retained_state_and_discovery_for_every_camera(
    daemon: RunningDaemon, mosquitto: Broker
) -> None:
    async with watching(mosquitto.port) as w:  # a client that arrives later: retained only
        await w.wait_for(lambda w: w.last.get(f"{PREFIX}/availability") == b"online", what="online")
        state = await w.wait_json(f"{PREFIX}/cameras/cam0/state", lambda s: True)
        assert state["device"] == "cam0" and state["status"] == "CONNECTED"
        assert state["name"] == "Gate" and state["resolution"] == "320x240"
        rec = await w.wait_json(f"{PREFIX}/cameras/cam1/recording", lambda s: True)
        assert rec == {"device": "cam1", "recording": False, "status": "STOPPED"}
        await w.wait_json(f"{PREFIX}/storage", lambda s: s["total_space"] > 0)
        await w.wait_for(lambda w: len(config_topics(w)) >= 13, what="discovery configs")
    configs = config_topics(w)
    kinds = {t.split("/")[1] + ":" + t.split("/")[3] for t in configs}
    for cam in ("cam0", "cam1"):
        assert {
            f"camera:{cam}_camera",
            f"button:{cam}_snapshot",
            f"switch:{cam}_recording",
            f"binary_sensor:{cam}_motion",
            f"binary_sensor:{cam}_connected",
        } <= kinds
    assert {"sensor:storage_used_percent", "sensor:storage_free_bytes"} <= kinds
    switch = configs["homeassistant/switch/node-a/cam0_recording/config"]
    assert switch["command_topic"] == f"{PREFIX}/cameras/cam0/command"
    assert json.loads(switch["payload_on"])["method"] == "start_recording"
    assert switch["state_topic"] == f"{PREFIX}/cameras/cam0/recording"
    assert switch["availability_topic"] == f"{PREFIX}/availability"
    assert switch["device"]["name"] == "Gate"
    assert len({c["unique_id"] for c in configs.values()}) == len(configs)


async def test_commands_run_through_the_dispatcher_with_the_mqtt_role(
    daemon: RunningDaemon, mosquitto: Broker
) -> None:
    async with watching(mosquitto.port) as w, aiomqtt.Client("127.0.0.1", mosquitto.port) as c:
        shot = await command(w, c, "cam0", {"method": "take_snapshot", "id": 7})
        assert shot["jsonrpc"] == "2.0" and shot["id"] == 7
        assert shot["result"]["status"] == "SUCCESS" and shot["result"]["device"] == "cam0"
        # Replies reach every subscriber of the broker: URLs come without their tokens.
        assert "token" not in shot["result"]["download_url"]
        urls = await command(w, c, "cam0", {"method": "get_camera_urls", "id": "u"})
        assert urls["result"]["snapshot_url"].endswith("/cameras/cam0/snapshot.jpg")
        assert not [t for t, p in w.history if b"token=" in p and not t.endswith("/image")]
        # The snapshot also goes out as a JPEG on the camera's image topic.
        await w.wait_for(
            lambda w: w.last.get(f"{PREFIX}/cameras/cam0/image", b"")[:2] == b"\xff\xd8",
            what="image",
        )
        admin_only = await command(w, c, "cam0", {"method": "get_storage_info", "id": "s"})
        assert admin_only["error"]["code"] == -32002
        assert admin_only["error"]["data"]["have_role"] == "operator"
        wrong = await command(
            w, c, "cam0", {"method": "take_snapshot", "params": {"device": "cam1"}, "id": 8}
        )
        assert wrong["error"]["code"] == -32602 and wrong["error"]["data"]["param"] == "device"
        bad_params = await command(
            w, c, "cam0", {"method": "start_recording", "params": {"duration": -1}, "id": 9}
        )
        assert bad_params["error"]["code"] == -32602
        unknown = await command(w, c, "cam0", {"method": "nope", "id": 10})
        assert unknown["error"]["code"] == -32601
        result_topic = f"{PREFIX}/cameras/cam0/command/result"
        seen = len([1 for t, _ in w.history if t == result_topic])
        await c.publish(f"{PREFIX}/cameras/cam0/command", b"{not json", qos=1)
        await w.wait_for(lambda w: len([1 for t, _ in w.history if t == result_topic]) > seen)
        parse_error = json.loads([p for t, p in w.history if t == result_topic][-1])
        assert parse_error["error"]["code"] == -32700
        # The recording switch: retained recording state follows.
        started = await command(w, c, "cam0", {"method": "start_recording", "id": "on"})
        assert started["result"]["status"] == "RECORDING"
        await w.wait_json(f"{PREFIX}/cameras/cam0/recording", lambda s: s["recording"] is True)
        stopped = await command(w, c, "cam0", {"method": "stop_recording", "id": "off"})
        assert stopped["result"]["status"] == "STOPPED"
        await w.wait_json(f"{PREFIX}/cameras/cam0/recording", lambda s: s["recording"] is False)
    events = [json.loads(p) for t, p in w.history if t == f"{PREFIX}/events"]
    assert {"snapshot.taken", "recording.start", "recording.stop"} <= {e["topic"] for e in events}


async def test_motion_events_drive_the_motion_sensor(
    daemon: RunningDaemon, mosquitto: Broker
) -> None:
    async with watching(mosquitto.port) as w:
        await w.wait_for(lambda w: f"{PREFIX}/cameras/cam0/state" in w.last, what="state")
        params = {"device": "cam0", "event_id": "e1", "score": 0.8, "start_time": "x"}
        daemon.app.bus.publish(Event("motion.start", "motion_event", params, device="cam0"))
        await w.wait_for(lambda w: w.last.get(f"{PREFIX}/cameras/cam0/motion") == b"ON")
        daemon.app.bus.publish(Event("motion.end", "motion_event", params, device="cam0"))
        await w.wait_for(lambda w: w.last.get(f"{PREFIX}/cameras/cam0/motion") == b"OFF")


async def test_a_forgotten_camera_loses_its_discovery_configs(
    daemon: RunningDaemon, mosquitto: Broker
) -> None:
    url = "rtsp://127.0.0.1:9/nothing"
    door_config = "homeassistant/switch/node-a/door_recording/config"
    async with daemon.client("operator") as rpc, watching(mosquitto.port) as w:
        await rpc.call("add_external_stream", {"stream_url": url, "stream_name": "door"})
        await w.wait_for(lambda w: bool(w.last.get(door_config)), what="door discovery")
        await rpc.call("remove_external_stream", {"stream_url": url})
        await w.wait_for(lambda w: w.last.get(door_config) == b"", what="door config removed")
        await w.wait_for(lambda w: w.last.get(f"{PREFIX}/cameras/door/state") == b"")
    async with watching(mosquitto.port) as w:  # a newcomer gets no retained door topics
        await w.wait_for(lambda w: len(config_topics(w)) >= 13, what="configs")
        await w.wait_for(lambda w: f"{PREFIX}/storage" in w.last, what="storage")
        assert not [t for t in w.last if "door" in t]


async def test_broker_restart_republishes_and_the_daemon_never_waits(
    daemon: RunningDaemon, mosquitto: Broker
) -> None:
    bridge = daemon.app.mqtt
    assert bridge is not None
    mosquitto.stop()
    await asyncio.wait_for(_until_clear(bridge.connected), 10)
    # While the broker is down the daemon answers as usual.
    async with daemon.client("operator") as rpc:
        started = time.perf_counter()
        assert await rpc.call("ping") == "pong"
        shot = await rpc.call("take_snapshot", {"device": "cam1"})
        assert shot["status"] == "SUCCESS"
        assert time.perf_counter() - started < 10
    await mosquitto.start()  # same port, empty broker (no persistence)
    await asyncio.wait_for(bridge.connected.wait(), 15)
    assert bridge.connections == 2
    async with watching(mosquitto.port) as w:
        await w.wait_for(lambda w: w.last.get(f"{PREFIX}/availability") == b"online")
        await w.wait_json(f"{PREFIX}/cameras/cam1/state", lambda s: s["status"] == "CONNECTED")
        await w.wait_for(lambda w: len(config_topics(w)) >= 13, what="discovery again")


async def _until_clear(event: asyncio.Event) -> None:
    while event.is_set():  # noqa: ASYNC110 - the bridge offers no "disconnected" event
        await asyncio.sleep(0.02)


async def test_username_and_password(tmp_path: Path) -> None:
    async with broker(tmp_path, users={"edge": "s3cret"}) as b:
        good = mqtt_overrides(b.url, username="edge", password="s3cret")
        async with running_daemon(tmp_path / "good", good) as d:
            assert d.app.mqtt is not None
            await asyncio.wait_for(d.app.mqtt.connected.wait(), 15)
            async with watching(b.port, username="edge", password="s3cret") as w:
                await w.wait_for(lambda w: w.last.get(f"{PREFIX}/availability") == b"online")
        bad = mqtt_overrides(b.url, username="edge", password="wrong")
        async with running_daemon(tmp_path / "bad", bad) as d:
            assert d.app.mqtt is not None
            await asyncio.wait_for(d.app.mqtt.error_seen.wait(), 15)
            assert "authori" in (d.app.mqtt.last_error or "").lower()
            assert not d.app.mqtt.connected.is_set()
            async with d.client("viewer") as rpc:  # refused by the broker, daemon fine
                assert await rpc.call("ping") == "pong"


async def test_tls_broker_with_client_certificates(tmp_path: Path) -> None:
    ca, cert, key = make_tls_files(tmp_path)
    client_cert, client_key = make_client_cert(tmp_path)
    async with broker(tmp_path, tls=(ca, cert, key), require_client_cert=True) as b:
        without = mqtt_overrides(b.url, ca_file=str(ca))
        async with running_daemon(tmp_path / "without", without) as d:
            assert d.app.mqtt is not None
            await asyncio.wait_for(d.app.mqtt.error_seen.wait(), 15)  # refused: no certificate
            assert not d.app.mqtt.connected.is_set()
        mutual = mqtt_overrides(
            b.url, ca_file=str(ca), cert_file=str(client_cert), key_file=str(client_key)
        )
        async with running_daemon(tmp_path / "with", mutual) as d:
            assert d.app.mqtt is not None
            await asyncio.wait_for(d.app.mqtt.connected.wait(), 15)


async def test_tls_broker(tmp_path: Path) -> None:
    ca, cert, key = make_tls_files(tmp_path)
    async with broker(tmp_path, tls=(ca, cert, key)) as b:
        overrides = mqtt_overrides(b.url, ca_file=str(ca))
        assert b.url.startswith("mqtts://")
        async with running_daemon(tmp_path / "d", overrides) as d:
            assert d.app.mqtt is not None
            await asyncio.wait_for(d.app.mqtt.connected.wait(), 15)
            assert d.app.mqtt.published > 0


async def test_broker_down_at_start_the_daemon_starts_and_connects_later(tmp_path: Path) -> None:
    late = Broker(tmp_path, name="late", port=free_port())
    async with running_daemon(tmp_path / "d", mqtt_overrides(late.url)) as d:
        bridge = d.app.mqtt
        assert bridge is not None
        await asyncio.wait_for(bridge.error_seen.wait(), 15)  # refused, retrying with backoff
        async with d.client("viewer") as rpc:
            assert await rpc.call("ping") == "pong"
        await late.start()
        try:
            await asyncio.wait_for(bridge.connected.wait(), 15)
            async with watching(late.port) as w:
                await w.wait_json(f"{PREFIX}/cameras/cam0/state", lambda s: True)
        finally:
            late.stop()


async def test_real_motion_turns_the_motion_sensor_on_and_off(
    tmp_path: Path, mosquitto: Broker
) -> None:
    """Motion detection (media/motion.py) on a scene that moves between t=4 s and t=8 s: the
    retained motion topic goes ON then OFF, as the Home Assistant binary sensor expects."""
    from camera_service.storage.modes import ModeSettings
    from tests.integration.test_motion import KNOWN_MOTION
    from tests.integration.test_motion import overrides as motion_overrides

    config = motion_overrides(KNOWN_MOTION)
    config["mqtt"] = mqtt_overrides(mosquitto.url)["mqtt"]
    async with running_daemon(tmp_path, config) as d, watching(mosquitto.port) as w:
        assert d.app.mqtt is not None
        await asyncio.wait_for(d.app.mqtt.connected.wait(), 15)
        sensor = "homeassistant/binary_sensor/node-a/yard_motion/config"
        await w.wait_json(sensor, lambda c: c["device_class"] == "motion")
        await d.app.nvr.set_mode("yard", ModeSettings("continuous", 10, 1.0, 1.0))
        motion = f"{PREFIX}/cameras/yard/motion"
        await w.wait_for(lambda w: w.last.get(motion) == b"ON", timeout=30, what="motion ON")
        await w.wait_for(lambda w: w.last.get(motion) == b"OFF", timeout=30, what="motion OFF")
        await d.app.nvr.set_mode("yard", ModeSettings("off", 10, 1.0, 1.0))
    events = [json.loads(p) for t, p in w.history if t == f"{PREFIX}/events"]
    motion_events = [e for e in events if e["topic"].startswith("motion.")]
    assert [e["topic"] for e in motion_events] == ["motion.start", "motion.end"]
    assert motion_events[0]["params"]["device"] == "yard"
