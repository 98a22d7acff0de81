"""Transport limits: frame size, connection cap, rate limit, origin allowlist, path, slow readers."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from camera_service.client import CameraClient, RpcCallError
from camera_service.events import Event
from tests.support.daemon import RunningDaemon, running_daemon


async def test_oversized_frame_closes_with_1009_and_server_lives(daemon: RunningDaemon) -> None:
    async with connect(daemon.ws_url, max_size=None) as ws:
        await ws.send("x" * ((1 << 20) + 1))
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    async with CameraClient(daemon.ws_url) as client:
        assert await client.call("ping") == "pong"


async def test_frame_at_the_limit_is_accepted(daemon: RunningDaemon) -> None:
    padding = "x" * ((1 << 20) - 200)
    frame = json.dumps({"jsonrpc": "2.0", "method": "ping", "id": padding[:10], "params": {}})
    frame = frame[:-1] + " " * ((1 << 20) - len(frame) - 1) + "}"
    async with connect(daemon.ws_url) as ws:
        await ws.send(frame)
        assert json.loads(await ws.recv())["result"] == "pong"


async def test_rate_limit_answers_32040_with_retry_after(tmp_path: Path) -> None:
    overrides = {"server": {"rate_limit": {"per_second": 5, "burst": 10}}}
    async with running_daemon(tmp_path, overrides) as daemon, connect(daemon.ws_url) as ws:
        batch = [{"jsonrpc": "2.0", "method": "ping", "id": i} for i in range(12)]
        await ws.send(json.dumps(batch))
        answers = json.loads(await ws.recv())
        limited = [a for a in answers if "error" in a]
        assert len(limited) == 2
        assert all(a["error"]["code"] == -32040 for a in limited)
        assert all(a["error"]["data"]["retry_after_ms"] > 0 for a in limited)


async def test_origin_allowlist(tmp_path: Path) -> None:
    overrides = {"server": {"allowed_origins": ["https://ops.example"]}}
    async with running_daemon(tmp_path, overrides) as daemon:
        with pytest.raises(InvalidStatus) as info:
            await connect(daemon.ws_url, origin="https://evil.example")  # type: ignore[arg-type]
        assert info.value.response.status_code == 403
        with pytest.raises(InvalidStatus):
            await connect(daemon.ws_url)
        async with CameraClient(daemon.ws_url, origin="https://ops.example") as client:
            assert await client.call("ping") == "pong"


async def test_other_path_is_404(daemon: RunningDaemon) -> None:
    with pytest.raises(InvalidStatus) as info:
        await connect(daemon.ws_url.replace("/ws", "/other"))
    assert info.value.response.status_code == 404


async def test_slow_reader_is_closed_1013_without_delaying_others(tmp_path: Path) -> None:
    overrides = {"server": {"send_queue_size": 16}}
    async with running_daemon(tmp_path, overrides) as daemon:
        slow = await connect(daemon.ws_url, max_queue=1)
        await slow.send(
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "method": "authenticate",
                    "id": 1,
                    "params": {"auth_token": daemon.keys["viewer"]},
                }
            )
        )
        assert "result" in json.loads(await slow.recv())
        async with daemon.client("viewer") as fast:
            big = {"blob": "x" * 65536}
            sessions = daemon.app.ws.sessions.values()
            overflowed = False
            for n in range(2000):
                event = Event("camera.status_change", "camera_status_update", {"n": n, **big})
                daemon.app.bus.publish(event)
                overflowed = any(s.overflowed for s in sessions)
                if overflowed:
                    break
                await asyncio.sleep(0)  # let writers and readers run, as a live loop would
            assert overflowed
            received = 0
            while received < 5:
                note = await fast.next_notification(timeout=5)
                assert note["method"] == "camera_status_update"
                received += 1
            assert await fast.call("ping") == "pong"
        with pytest.raises(ConnectionClosed) as info:
            while True:
                await slow.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1013


# (frame, the error code of its answer; a list for a batch answer)
BAD_FRAMES: list[tuple[str | bytes, int | list[int]]] = [
    (b"\xff\xfe\x00binary garbage", -32700),
    ("{", -32700),
    ("null", -32600),
    ("[[]]", [-32600]),
    ('{"jsonrpc":"2.0","method":"ping","id":[1]}', -32600),
    ('{"jsonrpc":"2.0","method":"' + "m" * 10000 + '","id":1}', -32601),
    ('{"jsonrpc":"2.0","method":"subscribe_events","params":{"topics":123},"id":1}', -32001),
    ('{"jsonrpc":"2.0","method":"authenticate","params":{"auth_token":{"$ne":1}},"id":1}', -32602),
    (
        '{"jsonrpc":"2.0","method":"authenticate","params":{"auth_token":"'
        + "a" * 9000
        + '"},"id":1}',
        -32602,
    ),
    ('{"jsonrpc":"2.0","method":"get_status","params":{"auth_token":12},"id":1}', -32001),
    (json.dumps([{"jsonrpc": "2.0", "method": "ping"}] * 51), -32600),
    ('{"jsonrpc":"2.0","method":"ping","id":1e400}', -32600),
    ('{"a":' * 5000 + "1" + "}" * 5000, -32700),
]


def error_codes(answer: Any) -> int | list[int]:
    if isinstance(answer, list):
        return [entry["error"]["code"] for entry in answer]
    return int(answer["error"]["code"])


@pytest.mark.parametrize(("frame", "expected"), BAD_FRAMES, ids=range(len(BAD_FRAMES)))
async def test_bad_input_is_answered_and_never_kills_the_server(
    daemon: RunningDaemon, frame: str | bytes, expected: int | list[int]
) -> None:
    async with connect(daemon.ws_url) as ws:
        await ws.send(frame)
        answer = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert error_codes(answer) == expected
    async with CameraClient(daemon.ws_url) as client:
        assert await client.call("ping") == "pong"
        with pytest.raises(RpcCallError) as info:
            await client.call("get_status")
        assert info.value.code == -32001
