"""A consumer that stops reading is closed with 1013 (try again later), not 1011 (issue 10,
item 16), also when its keepalive times out before its send budget is used up: the peer that
catches up reads 1013. A peer that reads but never answers pings still gets 1011."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from camera_service.events import Event
from tests.support.daemon import running_daemon
from tests.support.hostile import ws_open
from tests.support.waiting import wait_until

KEEPALIVE = {"server": {"ping_interval": 0.3, "ping_timeout": 0.5, "close_timeout": 5}}


async def test_consumer_that_stops_reading_is_closed_1013_by_the_keepalive(
    tmp_path: Path,
) -> None:
    async with running_daemon(tmp_path, KEEPALIVE) as daemon:
        ws = daemon.app.ws
        slow = await ws_open("127.0.0.1", ws.port, rcvbuf=4096, keep=True, answer_pings=True)
        assert slow is not None and slow.transport is not None
        auth = {"auth_token": daemon.keys["viewer"]}
        slow.send_text(
            json.dumps({"jsonrpc": "2.0", "method": "authenticate", "params": auth, "id": 1})
        )
        await wait_until(lambda: len(slow.texts) == 1, what="authenticated")
        session = next(iter(ws.sessions.values()))
        slow.transport.pause_reading()  # from now on it reads nothing, so it cannot pong
        # About 400 KB of events: far below the 4 MiB send budget, far above what a 4 KiB
        # receive buffer takes, so frames wait in the daemon's socket for the peer.
        for n in range(100):
            params = {"n": n, "pad": "x" * 4000}
            daemon.app.bus.publish(Event("camera.status_change", "camera_status_update", params))
            await asyncio.sleep(0)
        await wait_until(lambda: session.closed, timeout=10, what="slow peer closed")
        assert not session.overflowed  # the keepalive closed it, not the send budget
        slow.transport.resume_reading()  # catching up, it finds the close frame
        await wait_until(lambda: slow.close_code is not None, timeout=10, what="close frame")
        assert slow.close_code == 1013


async def test_peer_that_reads_but_never_pongs_is_closed_1011(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, KEEPALIVE) as daemon:
        mute = await ws_open("127.0.0.1", daemon.app.ws.port, keep=True, answer_pings=False)
        assert mute is not None
        await wait_until(lambda: mute.close_code is not None, timeout=10, what="closed")
        assert mute.close_code == 1011
