"""A fleet: two daemons on an edge Mosquitto bridged to a central one (both real)."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from tests.support.daemon import DaemonProcess
from tests.support.mosquitto import Watcher, broker, watching

pytestmark = pytest.mark.timeout(120)


def node_config(edge_url: str, node: str) -> dict[str, Any]:
    return {
        "cameras": {
            "sources": [
                {
                    "id": "cam0",
                    "name": f"{node} gate",
                    "input_format": "lavfi",
                    "input": "testsrc2=size=320x240:rate=10",
                },
            ]
        },
        "mqtt": {"enabled": True, "url": edge_url, "node_id": node, "backoff_base": 0.2},
    }


def seen(w: Watcher, topic: str, payload: bytes | None = None) -> bool:
    value = w.last.get(topic)
    return bool(value) if payload is None else value == payload


async def test_central_broker_sees_both_nodes_commands_reach_the_right_one_and_kill_is_offline(
    tmp_path: Path,
) -> None:
    async with (
        broker(tmp_path, name="central") as central,
        broker(tmp_path, name="edge", bridge_to=central.port) as edge,
        watching(central.port) as w,
    ):
        nodes: dict[str, DaemonProcess] = {}
        for name in ("node-a", "node-b"):
            (tmp_path / name).mkdir()
            nodes[name] = DaemonProcess(tmp_path / name, node_config(edge.url, name))
        try:
            for daemon in nodes.values():
                await daemon.start()
            for name in nodes:
                prefix = f"camera-service/{name}"
                await w.wait_for(lambda w, p=prefix: seen(w, f"{p}/availability", b"online"))
                state = await w.wait_json(f"{prefix}/cameras/cam0/state", lambda s: True)
                assert state["name"] == f"{name} gate"
                await w.wait_for(
                    lambda w, n=name: seen(w, f"homeassistant/switch/{n}/cam0_recording/config"),
                    what=f"{name} discovery",
                )
            # A command sent to the central broker reaches node-b only.
            async with aiomqtt.Client("127.0.0.1", central.port) as client:
                body = {"method": "get_camera_status", "id": "central-1"}
                await client.publish(
                    "camera-service/node-b/cameras/cam0/command", json.dumps(body), qos=1
                )
                result = "camera-service/node-b/cameras/cam0/command/result"
                reply = await w.wait_json(result, lambda r: r.get("id") == "central-1")
                assert reply["result"]["name"] == "node-b gate"
                assert "camera-service/node-a/cameras/cam0/command/result" not in w.last
            # SIGKILL: no goodbye from node-a; the edge broker's last will says offline.
            nodes["node-a"].signal(signal.SIGKILL)
            await w.wait_for(
                lambda w: seen(w, "camera-service/node-a/availability", b"offline"),
                timeout=60,
                what="node-a offline via last will",
            )
            assert w.last["camera-service/node-b/availability"] == b"online"
        finally:
            for daemon in nodes.values():
                await daemon.stop()
