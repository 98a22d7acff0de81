"""sd_notify protocol against a real AF_UNIX datagram socket."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from camera_service.sdnotify import SystemdNotifier, watchdog_loop

RECV_TIMEOUT = 2.0


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(RECV_TIMEOUT)
    try:
        yield sock, str(path)
    finally:
        sock.close()


def recv(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.split("\n"))


def drain(sock: socket.socket) -> list[bytes]:
    """Everything already queued, without waiting."""
    got: list[bytes] = []
    while True:
        try:
            got.append(sock.recv(4096, socket.MSG_DONTWAIT))
        except BlockingIOError:
            return got


def test_messages_arrive(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    with SystemdNotifier.from_env({"NOTIFY_SOCKET": path}) as n:
        assert n.enabled and n.address == path
        assert n.ready()
        assert recv(sock) == {"READY": "1"}
        assert n.ready("listening on :8002\nwith 2 cameras")
        assert recv(sock) == {"READY": "1", "STATUS": "listening on :8002 with 2 cameras"}
        assert n.status("3 cameras, 1 recording")
        assert recv(sock) == {"STATUS": "3 cameras, 1 recording"}
        assert n.watchdog()
        assert recv(sock) == {"WATCHDOG": "1"}
        assert n.stopping()
        assert recv(sock) == {"STOPPING": "1"}
        assert n.extend_timeout(2.5)
        assert recv(sock) == {"EXTEND_TIMEOUT_USEC": "2500000"}
        assert n.notify(reloading=1, status="reloading")
        assert recv(sock) == {"RELOADING": "1", "STATUS": "reloading"}
        with pytest.raises(ValueError):
            n.notify(STATUS="two\nlines")


def test_abstract_socket() -> None:
    name = f"camera-service-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(RECV_TIMEOUT)
        n = SystemdNotifier.from_env({"NOTIFY_SOCKET": "@" + name})
        assert n.address == "@" + name
        assert n.ready()
        assert recv(sock) == {"READY": "1"}
        n.close()


def test_noop_without_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    n = SystemdNotifier.from_env()
    assert not n.enabled and n.address is None
    assert not n.ready()
    assert not n.status("x")
    assert not n.stopping()
    assert not n.watchdog()
    assert n.watchdog_interval() is None
    assert not SystemdNotifier.from_env({"NOTIFY_SOCKET": ""}).enabled
    assert not SystemdNotifier.from_env({"NOTIFY_SOCKET": "vsock:2:1234"}).enabled


def test_send_errors_are_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    n = SystemdNotifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "missing.sock")})
    assert not n.ready()
    assert not n.watchdog()
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert sum("sd_notify" in r.getMessage() for r in warnings) == 1
    n.close()


def test_send_recovers_after_peer_appears(tmp_path: Path) -> None:
    path = tmp_path / "late.sock"
    n = SystemdNotifier.from_env({"NOTIFY_SOCKET": str(path)})
    assert not n.status("early")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(RECV_TIMEOUT)
        assert n.status("late")
        assert recv(sock) == {"STATUS": "late"}
    n.close()


def test_watchdog_interval(receiver: tuple[socket.socket, str]) -> None:
    _, path = receiver
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000"}
    assert SystemdNotifier.from_env(env).watchdog_interval() == 30.0
    mine = {**env, "WATCHDOG_PID": str(os.getpid())}
    assert SystemdNotifier.from_env(mine).watchdog_interval() == 30.0
    other = {**env, "WATCHDOG_PID": str(os.getpid() + 1)}
    assert SystemdNotifier.from_env(other).watchdog_interval() is None
    for bad in ("", "0", "-5", "abc"):
        assert SystemdNotifier.from_env({**env, "WATCHDOG_USEC": bad}).watchdog_interval() is None
    assert SystemdNotifier.from_env({**env, "WATCHDOG_PID": "x"}).watchdog_interval() is None
    assert SystemdNotifier.from_env({"WATCHDOG_USEC": "30000000"}).watchdog_interval() is None


async def _recv_async(sock: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    return await asyncio.wait_for(loop.sock_recv(sock, 4096), RECV_TIMEOUT)


async def test_watchdog_loop_pings_and_stops_when_loop_blocked(
    receiver: tuple[socket.socket, str],
) -> None:
    sock, path = receiver
    sock.setblocking(False)
    interval = 0.2  # pings every 0.1 s
    period = interval / 2
    n = SystemdNotifier.from_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": str(int(interval * 1e6))})
    # When each ping was sent (loop time), not when this test got round to reading it.
    loop = asyncio.get_running_loop()
    sent: list[float] = []
    ping = n.watchdog

    def recorded_ping() -> bool:
        sent.append(loop.time())
        return ping()

    n.watchdog = recorded_ping  # type: ignore[method-assign]
    start = loop.time()  # the loop's schedule begins later than this
    task = asyncio.create_task(watchdog_loop(n))
    try:
        for _ in range(4):
            assert await _recv_async(sock) == b"WATCHDOG=1"
        # Fixed rate: ping k is due k periods after the schedule began and never comes earlier
        # (a ping the loaded loop ran late is followed by a shorter gap, so a single gap has no
        # lower bound); it comes at most 0.4 s late (the bound of the gaps checked before).
        for k, at in enumerate(sent[:4]):
            assert k * period - 1e-3 <= at - start <= k * period + 0.4, (k, start, sent)

        # Block the event loop thread for several ping periods: no ping may be sent meanwhile.
        drain(sock)
        time.sleep(0.35)  # noqa: ASYNC251 - the deliberate block under test
        assert drain(sock) == []

        # Once the loop runs again, pings resume promptly (no burst of catch-up pings).
        assert await _recv_async(sock) == b"WATCHDOG=1"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        n.close()


async def test_watchdog_loop_explicit_interval(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    sock.setblocking(False)
    n = SystemdNotifier.from_env({"NOTIFY_SOCKET": path})  # no WATCHDOG_USEC
    task = asyncio.create_task(watchdog_loop(n, 0.1))
    try:
        assert await _recv_async(sock) == b"WATCHDOG=1"
        assert await _recv_async(sock) == b"WATCHDOG=1"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        n.close()


async def test_watchdog_loop_returns_without_watchdog() -> None:
    await asyncio.wait_for(watchdog_loop(SystemdNotifier(None)), 1.0)
    await asyncio.wait_for(watchdog_loop(SystemdNotifier(None), 1.0), 1.0)
    n = SystemdNotifier.from_env({"NOTIFY_SOCKET": "/nonexistent/sock"})
    await asyncio.wait_for(watchdog_loop(n), 1.0)  # enabled but no WATCHDOG_USEC
