"""Denial of service over WebSocket: non-reading peers, unauthenticated amplification and slot
holders, frames after close, subscription filter size (issue 10, items 1, 3 and 5).

Every test plays the hostile client over a real socket against an in-process daemon.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from camera_service.client import CameraClient, RpcCallError
from camera_service.events import Event
from tests.support.daemon import DaemonProcess, RunningDaemon, running_daemon
from tests.support.hostile import HostileConnection, ws_open
from tests.support.waiting import wait_until

DISCOVER = {"jsonrpc": "2.0", "method": "rpc.discover"}


def _request(method: str, params: dict[str, Any] | None = None, id_: int = 1) -> str:
    body: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": id_}
    if params is not None:
        body["params"] = params
    return json.dumps(body)


async def _hostile(
    daemon: RunningDaemon, source: str = "127.0.0.1", **kwargs: Any
) -> HostileConnection:
    conn = await ws_open(source, daemon.app.ws.port, **kwargs)
    assert conn is not None, f"handshake from {source} refused"
    return conn


# --- item 1: memory of peers that do not read ------------------------------------------------


async def test_non_reading_client_is_closed_once_its_bytes_are_over_budget(tmp_path: Path) -> None:
    """An unauthenticated peer that never reads asks for 400 × 34 KB: the daemon closes it
    instead of queueing, and gives every queued byte back."""
    overrides = {"server": {"rate_limit": {"enabled": False}, "close_timeout": 1}}
    async with running_daemon(tmp_path, overrides) as daemon:
        ws = daemon.app.ws
        conn = await _hostile(daemon, rcvbuf=4096)
        assert conn.transport is not None
        conn.transport.pause_reading()
        await wait_until(lambda: len(ws.sessions) == 1, what="session registered")
        session = next(iter(ws.sessions.values()))
        limit = daemon.app.config.server.unauthenticated_queue_bytes
        most = 0
        frame = json.dumps({**DISCOVER, "id": 1})
        for _ in range(400):
            if conn.lost.done() or session.closed:
                break
            conn.send_text(frame)
            await conn.writable()
            await asyncio.sleep(0)  # let the daemon read, answer and write, as a live loop would
            most = max(most, session.queued_bytes)
        await wait_until(lambda: not ws.sessions, timeout=10, what="hostile session closed")
        assert session.overflowed
        assert most <= limit
        assert ws.budget.used == 0
        conn.transport.resume_reading()  # a paused reader notices the reset only when reading
        await wait_until(lambda: conn.lost.done(), timeout=10, what="socket dropped")
        async with CameraClient(daemon.ws_url) as client:
            assert await client.call("ping") == "pong"


async def test_slow_reader_over_its_byte_budget_sees_1013(tmp_path: Path) -> None:
    """Bounded in bytes, not messages: 64 KiB events overflow a 256 KiB budget long before the
    1024-message queue bound, and the peer reading again finds close code 1013."""
    overrides = {"server": {"send_queue_bytes": 256 << 10}}
    async with running_daemon(tmp_path, overrides) as daemon:
        slow = await connect(daemon.ws_url, max_queue=1, max_size=None)
        await slow.send(_request("authenticate", {"auth_token": daemon.keys["viewer"]}))
        assert "result" in json.loads(await slow.recv())
        sessions = list(daemon.app.ws.sessions.values())
        big = {"blob": "x" * 65536}
        for n in range(200):
            daemon.app.bus.publish(
                Event("camera.status_change", "camera_status_update", {"n": n, **big})
            )
            if any(s.overflowed for s in sessions):
                break
            await asyncio.sleep(0)  # let the daemon read, answer and write, as a live loop would
        assert any(s.overflowed for s in sessions)
        assert n < 200
        with pytest.raises(ConnectionClosed) as info:
            while True:
                await slow.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1013


async def test_keepalive_closes_a_peer_that_stopped_reading(tmp_path: Path) -> None:
    """A peer that stops reading while 8 MB are on their way (under its 16 MiB budget) stops
    the socket's drain; the keepalive ping waits behind that data, and the ping together with
    its pong has one deadline, so the peer is closed (1013: frames still wait for it)
    instead of lingering."""
    overrides = {
        "server": {
            "send_queue_bytes": 16 << 20,
            "send_queue_total_bytes": 64 << 20,
            "ping_interval": 0.3,
            "ping_timeout": 0.5,
            "close_timeout": 1,
        }
    }
    async with running_daemon(tmp_path, overrides) as daemon:
        ws = daemon.app.ws
        conn = await _hostile(daemon, rcvbuf=4096, answer_pings=True, keep=True)
        conn.send_text(_request("authenticate", {"auth_token": daemon.keys["viewer"]}))
        await wait_until(lambda: bool(conn.texts), what="authenticated")
        assert conn.transport is not None
        conn.transport.pause_reading()
        session = next(iter(ws.sessions.values()))
        big = {"blob": "x" * 65536}
        for n in range(128):
            event = Event("camera.status_change", "camera_status_update", {"n": n, **big})
            daemon.app.bus.publish(event)
        assert not session.overflowed
        await wait_until(lambda: session.closed, timeout=10, what="keepalive closed the peer")
        assert not session.overflowed  # closed by the keepalive, not by the byte budget
        await wait_until(lambda: not ws.sessions, timeout=10, what="session gone")
        assert ws.budget.used == 0


async def test_unauthenticated_batch_does_not_fan_out(daemon: RunningDaemon) -> None:
    """50 × rpc.discover before authentication: the answer stops at the unauthenticated
    budget (the rest are -32600, not run); after authenticate the same batch is answered."""
    limit = daemon.app.config.server.unauthenticated_queue_bytes
    batch = json.dumps([{**DISCOVER, "id": i} for i in range(50)])
    async with connect(daemon.ws_url, max_size=None) as ws:
        await ws.send(batch)
        raw = await ws.recv()
        answers = json.loads(raw)
        assert len(answers) == 50
        results = [a for a in answers if "result" in a]
        refused = [a for a in answers if "error" in a]
        assert results and refused
        assert all(a["error"]["code"] == -32600 for a in refused)
        assert [a["id"] for a in answers] == list(range(50))
        one = len(json.dumps(results[0], separators=(",", ":"), ensure_ascii=False))
        assert len(raw) <= limit + one + 50 * 512  # the entry that reached the limit, + errors
        await ws.send(_request("authenticate", {"auth_token": daemon.keys["viewer"]}))
        assert "result" in json.loads(await ws.recv())
        await ws.send(batch)
        answers = json.loads(await ws.recv())
        assert all("result" in a for a in answers)
        assert answers[0]["result"] == results[0]["result"]


async def test_authenticate_leading_an_unauthenticated_batch_lifts_the_cap(
    daemon: RunningDaemon,
) -> None:
    entries = [
        {
            "jsonrpc": "2.0",
            "method": "authenticate",
            "params": {"auth_token": daemon.keys["viewer"]},
            "id": "a",
        }
    ]
    entries += [{**DISCOVER, "id": i} for i in range(20)]
    async with connect(daemon.ws_url, max_size=None) as ws:
        await ws.send(json.dumps(entries))
        answers = json.loads(await ws.recv())
        assert all("result" in a for a in answers), [a for a in answers if "error" in a][:1]


async def test_frames_arriving_after_close_are_not_processed(tmp_path: Path) -> None:
    """Once the daemon has sent its close frame (here: the authentication deadline), what the
    peer still sends is dropped unprocessed."""
    overrides = {"server": {"auth_timeout": 0.3, "close_timeout": 5}}
    async with running_daemon(tmp_path, overrides) as daemon:
        conn = await _hostile(daemon, keep=True)
        await wait_until(lambda: conn.close_code is not None, timeout=5, what="close frame")
        assert conn.close_code == 1008
        before = daemon.app.metrics.by_method["ping"]
        for i in range(20):
            conn.send_text(_request("ping", id_=i))
        conn.send_text(b"")  # an empty text frame: nothing; then our close frame
        assert conn.transport is not None
        conn.transport.write(b"\x88\x82\0\0\0\0\x03\xe8")  # masked close 1000
        await wait_until(lambda: not daemon.app.ws.sessions, timeout=5, what="session ended")
        assert daemon.app.metrics.by_method["ping"] == before
        assert conn.texts == []


# --- item 3: slots ---------------------------------------------------------------------------


async def test_unauthenticated_connections_are_closed_after_auth_timeout(tmp_path: Path) -> None:
    overrides = {"server": {"auth_timeout": 0.5}}
    async with (
        running_daemon(tmp_path, overrides) as daemon,
        daemon.client("viewer") as proven,
        CameraClient(daemon.ws_url) as per_call,
    ):
        token = daemon.keys["viewer"]
        assert isinstance(await per_call.call("get_camera_list", {"auth_token": token}), dict)
        idle = await _hostile(daemon, keep=True)  # opened after both, so it expires last
        await wait_until(lambda: idle.close_code is not None, timeout=5, what="idle one closed")
        assert idle.close_code == 1008
        assert await proven.call("ping") == "pong"
        assert await per_call.call("ping") == "pong"


async def test_per_address_cap_on_unauthenticated_connections(tmp_path: Path) -> None:
    overrides = {"server": {"max_unauthenticated_per_address": 3}}
    async with running_daemon(tmp_path, overrides) as daemon:
        held = [await _hostile(daemon, "127.0.0.5") for _ in range(3)]
        assert await ws_open("127.0.0.5", daemon.app.ws.port) is None
        other = await _hostile(daemon, "127.0.0.6")  # another address is not affected
        held[0].send_text(_request("authenticate", {"auth_token": daemon.keys["viewer"]}))
        await wait_until(
            lambda: sum(1 for s in daemon.app.ws.sessions.values() if s.proven) == 1,
            what="first holder authenticated",
        )
        again = await _hostile(daemon, "127.0.0.5")  # an authenticated one frees its share
        for conn in (*held, other, again):
            conn.abort()


async def test_admin_gets_in_while_holders_fill_every_slot(tmp_path: Path) -> None:
    """20 slots, 5 reserved, silent holders from many addresses: the holders never get more
    than 15, and an admin connecting and authenticating still gets in."""
    overrides = {"server": {"max_connections": 20, "reserved_slots": 5}}
    async with running_daemon(tmp_path, overrides) as daemon:
        ws = daemon.app.ws
        holders = []
        for i in range(30):
            holder = await ws_open(f"127.0.1.{i + 1}", ws.port, answer_pings=True)
            if holder is not None:
                holders.append(holder)
            for session in ws.sessions.values():
                session.opened_at -= 2.0  # as if held for a while: young ones are not evicted
        unproven = [s for s in ws.sessions.values() if not s.proven and not s.closed]
        assert len(unproven) <= 15
        async with daemon.client("admin") as admin:
            assert isinstance(await admin.call("get_status"), dict)
        evicted = [h for h in holders if h.lost.done() or h.close_code is not None]
        assert len(evicted) >= 15
        for holder in holders:
            holder.abort()


async def test_all_slots_authenticated_gives_503_with_retry_after(tmp_path: Path) -> None:
    overrides = {"server": {"max_connections": 12, "reserved_slots": 2}}
    async with running_daemon(tmp_path, overrides) as daemon:
        clients = []
        try:
            for _ in range(12):
                client = CameraClient(daemon.ws_url)
                await client.__aenter__()
                clients.append(client)
                await client.authenticate(daemon.keys["viewer"])
            with pytest.raises(InvalidStatus) as info:
                await connect(daemon.ws_url)
            assert info.value.response.status_code == 503
            assert info.value.response.headers["Retry-After"]
            await clients.pop().__aexit__(None, None, None)
            await wait_until(lambda: len(daemon.app.ws.sessions) == 11, what="slot released")
            async with CameraClient(daemon.ws_url) as client:
                assert await client.call("ping") == "pong"
        finally:
            for client in clients:
                await client.__aexit__(None, None, None)


# --- item 5: subscription filter size -------------------------------------------------------


async def test_subscription_device_filter_is_bounded(daemon: RunningDaemon) -> None:
    async with daemon.client("viewer") as client:
        many = [f"cam{i}" for i in range(65)]
        with pytest.raises(RpcCallError) as info:
            await client.call(
                "subscribe_events", {"topics": ["camera.*"], "filters": {"device": many}}
            )
        assert info.value.code == -32602
        assert daemon.app.bus.filters_of(next(iter(daemon.app.ws.sessions))) == {}
        answer = await client.call(
            "subscribe_events", {"topics": ["camera.*"], "filters": {"device": many[:64]}}
        )
        assert len(answer["filters"]["device"]) == 64


async def test_sigterm_while_non_reading_clients_hammer_stays_within_the_budget(
    tmp_path: Path,
) -> None:
    """10 clients that never read keep sending batches of 50 rpc.discover (reconnecting when
    dropped) while the daemon gets SIGTERM: it exits 0 within its 9 s shutdown budget."""
    daemon = DaemonProcess(tmp_path)
    await daemon.start()
    sent = 0
    stop = asyncio.Event()
    batch = json.dumps([{**DISCOVER, "id": i} for i in range(50)])

    async def hammer(source: str) -> None:
        nonlocal sent
        while not stop.is_set():
            conn = await ws_open(source, daemon.ws_port, rcvbuf=4096)
            if conn is None:
                await asyncio.sleep(0.1)  # refused (shutting down): try again, as an attacker would
                continue
            assert conn.transport is not None
            conn.transport.pause_reading()
            while not stop.is_set() and not conn.lost.done():
                conn.send_text(batch)
                sent += 1
                await asyncio.wait(
                    [asyncio.ensure_future(conn.writable()), conn.lost],
                    timeout=0.5,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            conn.abort()

    clients = [asyncio.create_task(hammer(f"127.0.4.{i + 1}")) for i in range(10)]
    try:
        await wait_until(lambda: sent >= 300, timeout=30, what="300 batches sent")
        daemon.signal(signal.SIGTERM)
        assert await daemon.wait(timeout=9) == 0
    finally:
        stop.set()
        await asyncio.gather(*clients, return_exceptions=True)
        await daemon.stop()
    assert not any("Traceback" in line for line in daemon.log_lines)
