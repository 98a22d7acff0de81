"""HTTP slowloris and connection floods on 8003, and the daemon's fd limit (issue 10, item 2).

The hostile connections are raw sockets from chosen loopback addresses, so per-address caps
can be exercised while a client from another address checks that the daemon still answers.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import sys
from pathlib import Path

import psutil
import yaml

from tests.support.clock import ManualClock
from tests.support.daemon import base_config, running_daemon
from tests.support.hostile import HostileConnection, open_tcp, ws_open
from tests.support.waiting import wait_until

LIVE = b"GET /health/live HTTP/1.1\r\nHost: test\r\n\r\n"


async def _get_live(port: int, source: str = "127.0.0.1") -> bytes:
    """One complete request; the status line of the answer (b"" when dropped)."""
    conn = await open_tcp(source, port)
    assert conn.transport is not None
    conn.transport.write(LIVE)
    try:
        head = await asyncio.wait_for(conn.head, 5)
    except ConnectionError:
        return b""
    finally:
        conn.abort()
    return head.split(b"\r\n", 1)[0]


async def _dropped(conn: HostileConnection, timeout: float) -> bool:
    try:
        await asyncio.wait_for(asyncio.shield(conn.lost), timeout)
    except TimeoutError:
        return False
    return True


async def test_partial_request_head_is_dropped_after_header_timeout(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, {"http": {"header_timeout": 0.5}}) as daemon:
        port = daemon.app.http.port
        slow = await open_tcp("127.0.0.1", port)
        assert slow.transport is not None
        slow.transport.write(b"GET /health/live HTTP/1.1\r\nHost: test\r\n")
        assert await _dropped(slow, 5), "a partial head was kept open"
        assert not slow.head.done() or slow.head.exception() is not None
        assert await _get_live(port) == b"HTTP/1.1 200 OK"


async def test_half_sent_second_request_on_a_kept_alive_connection_is_dropped(
    tmp_path: Path,
) -> None:
    async with running_daemon(tmp_path, {"http": {"header_timeout": 0.5}}) as daemon:
        conn = await open_tcp("127.0.0.1", daemon.app.http.port)
        assert conn.transport is not None
        conn.transport.write(LIVE)
        assert (await asyncio.wait_for(conn.head, 5)).startswith(b"HTTP/1.1 200")
        conn.transport.write(b"GET /health/live HTTP/1.1\r\n")
        assert await _dropped(conn, 5), "a half-sent keep-alive request was kept open"


async def test_per_address_and_total_http_connection_caps(tmp_path: Path) -> None:
    overrides = {"http": {"max_connections_per_address": 4, "max_connections": 6}}
    async with running_daemon(tmp_path, overrides) as daemon:
        port = daemon.app.http.port
        clock = ManualClock()
        daemon.app.http.waiting.clock = clock
        held = [await open_tcp("127.0.0.7", port) for _ in range(4)]
        extra = await open_tcp("127.0.0.7", port)
        assert await _dropped(extra, 5), "a fifth connection from one address was kept"
        assert await _get_live(port, "127.0.0.8") == b"HTTP/1.1 200 OK"  # others still served
        held += [await open_tcp("127.0.0.8", port) for _ in range(2)]  # now 6 in total
        over = await open_tcp("127.0.0.9", port)
        assert await _dropped(over, 5), "a connection over the total cap was kept"
        assert not any(conn.lost.done() for conn in held)  # young ones are not evicted
        clock.advance(2.0)  # every held connection has now waited 2 s for its request head
        assert await _get_live(port, "127.0.0.9") == b"HTTP/1.1 200 OK"  # the oldest made room
        await wait_until(lambda: sum(c.lost.done() for c in held) == 1, what="one evicted")
        assert held[0].lost.done()  # the first one opened
        for conn in held:
            conn.abort()
        await wait_until(lambda: daemon.app.http.cap.open == 0, what="caps released")
        assert await _get_live(port, "127.0.0.7") == b"HTTP/1.1 200 OK"


async def test_request_body_that_does_not_arrive_gets_408(tmp_path: Path) -> None:
    """POST /mediamtx/auth (a handler that reads its body) announced with 100 bytes and sent
    10: the handler is not left waiting."""
    overrides = {
        "http": {"body_timeout": 0.5},
        "mediamtx": {"enabled": True, "api_url": "http://127.0.0.1:9", "stream_auth": True},
    }
    async with running_daemon(tmp_path, overrides) as daemon:
        conn = await open_tcp("127.0.0.1", daemon.app.http.port)
        assert conn.transport is not None
        conn.transport.write(
            b"POST /mediamtx/auth HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n"
        )
        head = await asyncio.wait_for(conn.head, 5)
        assert head.startswith(b"HTTP/1.1 408"), head[:40]
        conn.abort()


async def test_websocket_port_drops_connections_over_the_per_address_cap(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, {"server": {"max_connections_per_address": 3}}) as daemon:
        port = daemon.app.ws.port
        held = [await open_tcp("127.0.0.11", port) for _ in range(3)]
        extra = await open_tcp("127.0.0.11", port)
        assert await _dropped(extra, 5), "a fourth TCP connection from one address was kept"
        other = await ws_open("127.0.0.12", port)
        assert other is not None, "another address was refused"
        for conn in (*held, other):
            conn.abort()


async def test_daemon_raises_its_own_open_file_limit_at_start(tmp_path: Path) -> None:
    """Started with a soft limit of 256 under a higher hard limit, the daemon runs with the
    hard limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(base_config(tmp_path)))

    def low_soft_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "camera_service",
        "--config",
        str(config),
        "run",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=low_soft_limit,
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            while b"camera-service started" not in (line := await proc.stdout.readline()):
                assert line, "daemon exited during start"
        soft, _ = psutil.Process(proc.pid).rlimit(psutil.RLIMIT_NOFILE)
        assert soft == min(hard, 1 << 20) > 256
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 15)
