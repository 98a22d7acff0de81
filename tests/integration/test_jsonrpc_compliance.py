"""JSON-RPC 2.0 compliance over a real socket: the specification's examples section, adapted to
this API's methods (no `subtract`/`sum` here: `ping` plays the successful call)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.support.daemon import RunningDaemon

PING = {"jsonrpc": "2.0", "method": "ping", "id": "sentinel"}


async def exchange(ws: ClientConnection, frame: str) -> Any:
    """Send `frame` and return its response, or None when it produced none.

    Calls on one connection run concurrently, so answers may come in any order: a sentinel
    ping sent after the frame, and a second one sent after the first comes back, bound the
    window in which an answer to `frame` could still arrive."""
    await ws.send(frame)
    answers = []
    for sentinel in ("sentinel-1", "sentinel-2"):
        await ws.send(json.dumps({**PING, "id": sentinel}))
        while True:
            message = json.loads(await ws.recv())
            if isinstance(message, dict) and message.get("id") == sentinel:
                assert message == {"jsonrpc": "2.0", "result": "pong", "id": sentinel}
                break
            answers.append(message)
        if answers:
            break
    assert len(answers) <= 1, answers
    return answers[0] if answers else None


def err(code: int, request_id: Any = None) -> dict[str, Any]:
    return {"code": code, "id": request_id}


def shape(response: Any) -> Any:
    """Reduce responses to what the specification fixes: result or error code, and id."""
    if response is None:
        return None
    if isinstance(response, list):
        return sorted((shape(r) for r in response), key=lambda r: json.dumps(r, sort_keys=True))
    assert response["jsonrpc"] == "2.0"
    assert ("result" in response) != ("error" in response)
    if "error" in response:
        assert isinstance(response["error"]["message"], str) and response["error"]["message"]
        return err(response["error"]["code"], response["id"])
    return {"result": response["result"], "id": response["id"]}


CASES = [
    (
        "call by name",
        '{"jsonrpc":"2.0","method":"ping","params":{},"id":1}',
        {"result": "pong", "id": 1},
    ),
    (
        "call without params",
        '{"jsonrpc":"2.0","method":"ping","id":2}',
        {"result": "pong", "id": 2},
    ),
    (
        "string id echoed",
        '{"jsonrpc":"2.0","method":"ping","id":"abc"}',
        {"result": "pong", "id": "abc"},
    ),
    (
        "null id echoed",
        '{"jsonrpc":"2.0","method":"ping","id":null}',
        {"result": "pong", "id": None},
    ),
    (
        "float id echoed",
        '{"jsonrpc":"2.0","method":"ping","id":1.5}',
        {"result": "pong", "id": 1.5},
    ),
    (
        "positional params",
        '{"jsonrpc":"2.0","method":"ping","params":[42,23],"id":3}',
        err(-32602, 3),
    ),
    ("notification", '{"jsonrpc":"2.0","method":"ping","params":{}}', None),
    (
        "notification of unknown method",
        '{"jsonrpc":"2.0","method":"update","params":[1,2,3]}',
        None,
    ),
    ("notification with bad params", '{"jsonrpc":"2.0","method":"ping","params":[1]}', None),
    ("unknown method", '{"jsonrpc":"2.0","method":"foobar","id":"1"}', err(-32601, "1")),
    ("invalid JSON", '{"jsonrpc":"2.0","method":"foobar,"params":"bar","baz]', err(-32700)),
    ("method not a string", '{"jsonrpc":"2.0","method":1,"params":"bar"}', err(-32600)),
    ("wrong version", '{"jsonrpc":"1.0","method":"ping","id":4}', err(-32600, 4)),
    ("missing version", '{"method":"ping","id":5}', err(-32600, 5)),
    ("params a string", '{"jsonrpc":"2.0","method":"ping","params":"x","id":6}', err(-32600, 6)),
    ("unknown member", '{"jsonrpc":"2.0","method":"ping","id":7,"extra":1}', err(-32600, 7)),
    ("id an object", '{"jsonrpc":"2.0","method":"ping","id":{"a":1}}', err(-32600)),
    ("not an object", '"hello"', err(-32600)),
    (
        "batch with invalid JSON",
        '[{"jsonrpc":"2.0","method":"ping","id":"1"},{"jsonrpc":"2.0","method"]',
        err(-32700),
    ),
    ("empty batch", "[]", err(-32600)),
    ("batch of one invalid", "[1]", [err(-32600)]),
    ("batch of three invalid", "[1,2,3]", [err(-32600), err(-32600), err(-32600)]),
    (
        "mixed batch",
        json.dumps(
            [
                {"jsonrpc": "2.0", "method": "ping", "id": "1"},
                {"jsonrpc": "2.0", "method": "ping", "params": {}},
                {"jsonrpc": "2.0", "method": "ping", "params": [42, 23], "id": "2"},
                {"foo": "boo"},
                {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
                {"jsonrpc": "2.0", "method": "get_status", "id": "9"},
            ]
        ),
        [
            {"result": "pong", "id": "1"},
            err(-32602, "2"),
            err(-32600),
            err(-32601, "5"),
            err(-32001, "9"),
        ],
    ),
    (
        "batch of only notifications",
        '[{"jsonrpc":"2.0","method":"ping","params":{}},{"jsonrpc":"2.0","method":"nope"}]',
        None,
    ),
]


@pytest.mark.parametrize(("frame", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_specification_example(daemon: RunningDaemon, frame: str, expected: Any) -> None:
    async with connect(daemon.ws_url) as ws:
        assert shape(await exchange(ws, frame)) == shape_expected(expected)


def shape_expected(expected: Any) -> Any:
    if isinstance(expected, list):
        return sorted(expected, key=lambda r: json.dumps(r, sort_keys=True))
    return expected


async def test_oversized_batch_gets_one_error_with_hint(daemon: RunningDaemon) -> None:
    batch = [{"jsonrpc": "2.0", "method": "ping", "id": i} for i in range(51)]
    async with connect(daemon.ws_url) as ws:
        response = await exchange(ws, json.dumps(batch))
    assert isinstance(response, dict)
    assert response["error"]["code"] == -32600
    assert "50" in response["error"]["data"]["hint"]


async def test_batch_at_limit_is_answered_entry_by_entry(daemon: RunningDaemon) -> None:
    batch = [{"jsonrpc": "2.0", "method": "ping", "id": i} for i in range(50)]
    async with connect(daemon.ws_url) as ws:
        response = await exchange(ws, json.dumps(batch))
    assert sorted(r["id"] for r in response) == list(range(50))
    assert all(r["result"] == "pong" for r in response)


async def test_invalid_params_carry_param_rule_hint(daemon: RunningDaemon) -> None:
    async with daemon.client("viewer") as client:
        response = await client.request("subscribe_events", {"topics": ["camera.nonsense"]})
    error = response["error"]
    assert error["code"] == -32602
    assert error["data"]["param"] == "topics"
    assert "camera.nonsense" in error["data"]["rule"]
    assert error["data"]["hint"]


async def test_unknown_param_member_is_invalid_params(daemon: RunningDaemon) -> None:
    async with daemon.client("admin") as client:
        response = await client.request("get_status", {"verbose": True})
    assert response["error"]["code"] == -32602
    assert response["error"]["data"]["param"] == "verbose"


async def test_internal_fault_is_32603_with_request_id_and_connection_survives(
    daemon: RunningDaemon, caplog: pytest.LogCaptureFixture
) -> None:
    from camera_service.auth.roles import Role

    async def broken(ctx: Any, params: Any) -> Any:
        raise RuntimeError("boom")

    daemon.app.registry.add("test_broken", broken, result=str, role=Role.VIEWER, doc="Fails.")
    async with daemon.client("viewer") as client:
        response = await client.request("test_broken")
        assert response["error"]["code"] == -32603
        request_id = response["error"]["data"]["request_id"]
        assert "boom" not in json.dumps(response)
        assert await client.call("ping") == "pong"
    logged = [r for r in caplog.records if getattr(r, "request_id", None) == request_id]
    assert logged and logged[0].exc_info is not None
