"""MQTT topic layout, discovery configs and command parsing (pure)."""

from __future__ import annotations

import json

import pytest

from camera_service.mqtt.bridge import broker_address
from camera_service.mqtt.topics import (
    CommandError,
    Topics,
    camera_discovery,
    default_node_id,
    parse_command,
)

T = Topics("camera-service/box1", "homeassistant", "box1")


def test_node_id_defaults_to_a_safe_host_name() -> None:
    assert default_node_id("Edge-Box_7.local") == "edge-box_7"
    assert default_node_id("weird name!") == "weird-name"
    assert default_node_id("...") == "camera-service"


def test_command_topics_name_their_camera() -> None:
    assert T.camera_of_command("camera-service/box1/cameras/cam0/command") == "cam0"
    assert T.camera_of_command("camera-service/box1/cameras/cam0/command/result") is None
    assert T.camera_of_command("camera-service/box2/cameras/cam0/command") is None
    assert T.camera_of_command("camera-service/box1/cameras//command") is None


def test_commands_get_the_topic_camera_and_refuse_another() -> None:
    cmd = parse_command(b'{"method": "take_snapshot", "id": 3}', "cam0", takes_device=True)
    assert cmd.request == {
        "jsonrpc": "2.0",
        "method": "take_snapshot",
        "id": 3,
        "params": {"device": "cam0"},
    }
    assert cmd.has_id
    bare = parse_command(b'{"method": "ping"}', "cam0", takes_device=False)
    assert bare.request == {"jsonrpc": "2.0", "method": "ping"} and not bare.has_id
    with pytest.raises(CommandError) as err:
        parse_command(b'{"method": "x", "params": {"device": "cam1"}}', "cam0", True)
    assert err.value.code == -32602
    for bad, code in ((b"{nope", -32700), (b"[1]", -32600), (b"x" * 70000, -32600)):
        with pytest.raises(CommandError) as err:
            parse_command(bad, "cam0", True)
        assert err.value.code == code


def test_discovery_configs_are_unique_and_point_at_the_node_topics() -> None:
    configs = camera_discovery(T, "cam0", "Gate")
    assert len({c["unique_id"] for c in configs.values()}) == len(configs) == 5
    button = configs["homeassistant/button/box1/cam0_snapshot/config"]
    assert json.loads(button["payload_press"])["params"] == {"device": "cam0"}
    assert button["command_topic"] == "camera-service/box1/cameras/cam0/command"
    camera = configs["homeassistant/camera/box1/cam0_camera/config"]
    assert camera["topic"] == "camera-service/box1/cameras/cam0/image"


def test_broker_urls() -> None:
    assert broker_address("mqtt://broker") == ("broker", 1883, False)
    assert broker_address("mqtts://broker:9883") == ("broker", 9883, True)
    with pytest.raises(ValueError):
        broker_address("http://broker")


def test_mqtt_payloads_carry_no_url_credentials() -> None:
    """Retained camera state and events reach every broker subscriber and outlive tokens:
    stream tokens, signed download links and URL user-info are dropped, the rest is kept."""
    from camera_service.mqtt.topics import event_payload, without_credentials

    camera = {
        "device": "camera0",
        "streams": {
            "rtsp": "rtsp://box:8554/camera0?token=cst1.1.-.sig",
            "hls": "http://box:8888/camera0/index.m3u8?token=cst1.1.-.sig",
        },
        "source": "rtsp://user:secret@10.0.0.1/x?a=1&token=t",
        "name": "Gate ://",
        "fps": 15,
    }
    clean = without_credentials(camera)
    assert clean["streams"] == {
        "rtsp": "rtsp://box:8554/camera0",
        "hls": "http://box:8888/camera0/index.m3u8",
    }
    assert clean["source"] == "rtsp://10.0.0.1/x?a=1"
    assert clean["name"] == "Gate ://" and clean["fps"] == 15
    assert camera["streams"]["rtsp"].endswith("sig")  # the caller's object is untouched
    shot = {"device": "camera0", "download_url": "http://box:8003/files/snapshots/a.jpg?token=9.x"}
    body = json.loads(event_payload("snapshot.taken", "snapshot_taken", shot))
    assert body["params"]["download_url"] == "http://box:8003/files/snapshots/a.jpg"
    assert "token" not in json.dumps(body)
