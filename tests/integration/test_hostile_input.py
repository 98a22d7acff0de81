"""Hostile input answered per the spec: lone surrogates, out-of-range JWT times (issue 10)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from typing import Any

import jwt as pyjwt
import pytest
import websockets

from tests.support.daemon import RunningDaemon

LONE = "\\ud800"  # a lone surrogate spelled as a JSON escape


async def exchange(daemon: RunningDaemon, *frames: str) -> list[Any]:
    """Send the frames on one connection and return each decoded answer."""
    answers = []
    async with websockets.connect(daemon.ws_url) as ws:
        for frame in frames:
            await ws.send(frame)
            answers.append(json.loads(await ws.recv()))
    return answers


def call(method: str, params: str | None = None, request_id: str = "1") -> str:
    body = f'"jsonrpc":"2.0","method":"{method}","id":{request_id}'
    return "{" + body + (f',"params":{params}' if params else "") + "}"


@pytest.mark.parametrize(
    ("frame", "code", "echo"),
    [
        (call("ping", request_id=f'"{LONE}"'), -32600, None),
        (call(LONE, request_id="7"), -32600, 7),
        (call("get_camera_list", f'{{"auth_token":"{LONE}"}}', "8"), -32001, 8),
        (call("authenticate", f'{{"auth_token":"csk_a_{LONE}"}}', "9"), -32001, 9),
        (call("ping", f'{{"{LONE}":1}}', "10"), -32602, 10),
        (f'{{"jsonrpc":"2.0","method":"ping","id":11,"{LONE}":1}}', -32600, 11),
    ],
)
async def test_lone_surrogates_are_invalid_not_internal(
    daemon: RunningDaemon, caplog: pytest.LogCaptureFixture, frame: str, code: int, echo: Any
) -> None:
    with caplog.at_level(logging.ERROR):
        answer, after = await exchange(daemon, frame, call("ping"))
    assert after["result"] == "pong"  # the connection stays usable
    assert answer["error"]["code"] == code
    assert answer["id"] == echo
    assert not [r for r in caplog.records if r.exc_info], "no traceback for bad input"


async def test_surrogate_in_params_of_a_task_method_is_32602(daemon: RunningDaemon) -> None:
    admin = daemon.keys["admin"]
    frames = [
        call("get_camera_status", f'{{"device":"{LONE}","auth_token":"{admin}"}}'),
        call("subscribe_events", f'{{"topics":["camera.*"],"filters":{{"device":["{LONE}"]}}}}'),
    ]
    async with websockets.connect(daemon.ws_url) as ws:
        await ws.send(call("authenticate", f'{{"auth_token":"{admin}"}}'))
        assert "result" in json.loads(await ws.recv())
        for frame in frames:
            await ws.send(frame)
            answer = json.loads(await ws.recv())
            assert answer["error"]["code"] == -32602, answer
            assert answer["id"] == 1


async def test_batch_entries_stay_independent_with_a_bad_entry(daemon: RunningDaemon) -> None:
    batch = f"[{call('ping', request_id='1')},{call(LONE, request_id='2')},{call('ping', request_id='3')}]"
    [answers] = await exchange(daemon, batch)
    by_id = {a["id"]: a for a in answers}
    assert by_id[1]["result"] == "pong" and by_id[3]["result"] == "pong"
    assert by_id[2]["error"]["code"] == -32600


async def test_surrogate_credentials_count_toward_the_failed_auth_limit(
    daemon: RunningDaemon,
) -> None:
    frame = call("get_camera_list", f'{{"auth_token":"{LONE}"}}')
    answers = await exchange(daemon, *[frame] * daemon.app.config.auth.failed_auth_limit)
    assert {a["error"]["code"] for a in answers} == {-32001}
    [limited] = await exchange(
        daemon, call("authenticate", f'{{"auth_token":"{daemon.keys["admin"]}"}}')
    )
    assert limited["error"]["code"] == -32040


def signed_jwt(secret: bytes, payload: str) -> str:
    def b64(raw: bytes) -> bytes:
        return base64.urlsafe_b64encode(raw).rstrip(b"=")

    head = b64(b'{"alg":"HS256","typ":"JWT"}') + b"." + b64(payload.encode())
    return (head + b"." + b64(hmac.new(secret, head, hashlib.sha256).digest())).decode()


@pytest.mark.parametrize("exp", ["253402300800", "999999999999", "1e400", "1e300", "-1e400"])
async def test_jwt_time_out_of_range_is_32001_and_binds_nothing(
    daemon: RunningDaemon, exp: str
) -> None:
    now = int(time.time())
    token = signed_jwt(
        daemon.app.jwt._secret, f'{{"sub":"x","role":"admin","iat":{now},"exp":{exp}}}'
    )
    viewer = daemon.keys["viewer"]
    async with websockets.connect(daemon.ws_url) as ws:
        await ws.send(call("authenticate", f'{{"auth_token":"{viewer}"}}', "1"))
        assert json.loads(await ws.recv())["result"]["role"] == "viewer"
        await ws.send(call("authenticate", json.dumps({"auth_token": token}), "2"))
        answer = json.loads(await ws.recv())
        assert answer["error"]["code"] == -32001, answer
        await ws.send(call("get_status", request_id="3"))  # admin-only
        assert json.loads(await ws.recv())["error"]["code"] == -32002  # still a viewer


async def test_jwt_exp_in_year_9999_still_works(daemon: RunningDaemon) -> None:
    token = pyjwt.encode(
        {"sub": "x", "role": "admin", "iat": int(time.time()), "exp": 253402300799},
        daemon.app.jwt._secret,
        algorithm="HS256",
    )
    [answer] = await exchange(daemon, call("authenticate", json.dumps({"auth_token": token})))
    assert answer["result"]["expires_at"] == "9999-12-31T23:59:59+00:00"
