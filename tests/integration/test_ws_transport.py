"""The WebSocket transport over websockets' Sans-I/O protocol (transport/ws_connection.py):
what it must keep from the asyncio layer it replaced, and what it must not cost.

Real sockets against an in-process daemon; raw frames where a library client would hide the
detail (fragments, invalid UTF-8, several frames in one TCP write).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from camera_service.client import CameraClient
from camera_service.transport.ws_connection import WRITE_LIMIT
from tests.support.daemon import RunningDaemon, running_daemon
from tests.support.hostile import HostileConnection, frame, ws_open
from tests.support.waiting import wait_until


def _request(method: str, id_: int, params: dict[str, Any] | None = None) -> bytes:
    body: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": id_}
    if params is not None:
        body["params"] = params
    return json.dumps(body).encode()


async def _open(daemon: RunningDaemon) -> HostileConnection:
    conn = await ws_open("127.0.0.1", daemon.app.ws.port, keep=True, answer_pings=True)
    assert conn is not None and conn.transport is not None
    return conn


async def _answers(conn: HostileConnection, count: int) -> list[Any]:
    await wait_until(lambda: len(conn.texts) >= count, timeout=10, what=f"{count} answers")
    return [json.loads(text) for text in conn.texts]


async def test_idle_authenticated_connections_hold_no_task(daemon: RunningDaemon) -> None:
    """The per-connection cost that issue 16 removed: no read loop, writer or keepalive task
    per idle connection (the asyncio layer kept three)."""
    before = len(asyncio.all_tasks())
    clients = []
    try:
        for _ in range(40):
            client = CameraClient(daemon.ws_url)
            await client.__aenter__()
            clients.append(client)
            await client.authenticate(daemon.keys["viewer"])
        await wait_until(lambda: len(daemon.app.ws.sessions) == 40, what="40 sessions")
        client_tasks = 40 * 2  # each library client keeps its own reader and keepalive tasks
        assert len(asyncio.all_tasks()) - before <= client_tasks + 5
    finally:
        for client in clients:
            await client.__aexit__(None, None, None)


async def test_frames_in_one_write_are_answered_in_order_and_authenticate_binds_first(
    daemon: RunningDaemon,
) -> None:
    conn = await _open(daemon)
    assert conn.transport is not None
    auth = _request("authenticate", 1, {"auth_token": daemon.keys["viewer"]})
    batch = b"[" + b",".join(_request("ping", n) for n in (3, 4)) + b"]"  # gathers: suspends
    conn.transport.write(
        frame(1, auth)
        + frame(1, _request("get_camera_list", 2))
        + frame(1, batch)
        + frame(1, _request("get_server_info", 5))
    )
    answers = await _answers(conn, 4)
    assert answers[0]["result"]["authenticated"] is True
    assert "cameras" in answers[1]["result"]  # bound before this frame was read
    assert [a["id"] for a in answers[2]] == [3, 4]
    assert answers[3]["id"] == 5
    conn.abort()


async def test_fragmented_text_message_is_reassembled(daemon: RunningDaemon) -> None:
    conn = await _open(daemon)
    assert conn.transport is not None
    text = _request("ping", 7)
    first, middle, last = text[:5], text[5:12], text[12:]
    # FIN=0 text, FIN=0 continuation, FIN=1 continuation (opcodes 1, 0, 0).
    conn.transport.write(
        bytes((0x01, 0x80 | len(first)))
        + b"\0\0\0\0"
        + first
        + bytes((0x00, 0x80 | len(middle)))
        + b"\0\0\0\0"
        + middle
        + bytes((0x80, 0x80 | len(last)))
        + b"\0\0\0\0"
        + last
    )
    answers = await _answers(conn, 1)
    assert answers == [{"jsonrpc": "2.0", "result": "pong", "id": 7}]
    conn.abort()


async def test_text_that_is_not_utf8_closes_with_1007_and_the_server_lives(
    daemon: RunningDaemon,
) -> None:
    conn = await _open(daemon)
    assert conn.transport is not None
    conn.transport.write(frame(1, b'{"jsonrpc":"2.0","method":"\xff\xfe","id":1}'))
    await wait_until(lambda: conn.close_code is not None, timeout=10, what="close frame")
    assert conn.close_code == 1007
    assert conn.texts == []
    async with CameraClient(daemon.ws_url) as client:
        assert await client.call("ping") == "pong"


async def test_more_slow_calls_than_max_inflight_are_all_answered(tmp_path: Path) -> None:
    """Past `max_inflight` calls at once, reading pauses instead of dropping or queueing
    without bound; every call is answered once slots free up."""
    overrides = {"server": {"max_inflight": 2, "rate_limit": {"enabled": False}}}
    async with running_daemon(tmp_path, overrides) as daemon:
        conn = await _open(daemon)
        assert conn.transport is not None
        conn.transport.write(
            frame(1, _request("authenticate", 0, {"auth_token": daemon.keys["admin"]}))
        )
        await _answers(conn, 1)
        # get_storage_info is not inline: each runs as a task (it measures the disk).
        conn.transport.write(
            b"".join(frame(1, _request("get_storage_info", n)) for n in range(1, 9))
        )
        answers = await _answers(conn, 9)
        assert sorted(a["id"] for a in answers[1:]) == list(range(1, 9))
        assert all("result" in a for a in answers[1:])
        conn.abort()


async def test_silent_peer_gets_a_ping_and_a_live_one_stays(tmp_path: Path) -> None:
    overrides = {"server": {"ping_interval": 0.2, "ping_timeout": 0.5}}
    async with running_daemon(tmp_path, overrides) as daemon:
        live = await _open(daemon)  # answers pings
        dead = await ws_open("127.0.0.1", daemon.app.ws.port, keep=True, answer_pings=False)
        assert dead is not None
        await wait_until(lambda: dead.close_code is not None, timeout=10, what="dead closed")
        assert dead.close_code == 1011
        assert live.close_code is None and not live.lost.done()
        assert live.transport is not None
        live.transport.write(frame(1, _request("ping", 1)))
        assert (await _answers(live, 1))[0]["result"] == "pong"
        live.abort()


async def test_chatty_peer_that_never_reads_is_bounded_and_closed(tmp_path: Path) -> None:
    """A peer that keeps sending pings (each answered with a pong) but reads nothing: once
    the socket buffer toward it is full the daemon stops reading from it, so the pongs it
    owes cannot pile up; the peer then looks silent and the keepalive closes it."""
    overrides = {"server": {"ping_interval": 0.3, "ping_timeout": 0.6, "close_timeout": 1}}
    async with running_daemon(tmp_path, overrides) as daemon:
        conn = await ws_open("127.0.0.1", daemon.app.ws.port, rcvbuf=4096)
        assert conn is not None and conn.transport is not None
        conn.transport.pause_reading()
        await wait_until(lambda: len(daemon.app.ws.sessions) == 1, what="session registered")
        server_side = next(iter(daemon.app.ws._connections.values()))
        most = 0
        burst = frame(0x9, b"x" * 125) * 1000  # the largest pings: 127 bytes of pong each
        for _ in range(200):  # 26 MB of pongs owed: more than any kernel buffer holds
            if conn.lost.done() or server_side.transport is None:
                break
            conn.transport.write(burst)
            await conn.writable()
            await asyncio.sleep(0)
            most = max(most, server_side.buffered())
        await wait_until(lambda: not daemon.app.ws.sessions, timeout=10, what="peer closed")
        # At most what one read (256 KiB of pings) owes on top of the buffer's high-water mark.
        assert most <= WRITE_LIMIT + (1 << 20), f"{most} bytes buffered toward a non-reader"
        async with CameraClient(daemon.ws_url) as client:
            assert await client.call("ping") == "pong"
