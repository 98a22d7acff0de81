"""The daemon speaks sd_notify: READY=1 once it accepts connections, WATCHDOG=1 at the
configured rate from its event loop, STOPPING=1 on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path

from websockets.asyncio.client import connect

from tests.support.daemon import DaemonProcess


class NotifyListener:
    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)

    async def next(self, timeout: float = 10.0) -> str:
        loop = asyncio.get_running_loop()
        data = await asyncio.wait_for(loop.sock_recv(self.sock, 4096), timeout)
        return data.decode()

    async def until(self, needle: str, timeout: float = 10.0) -> list[str]:
        seen: list[str] = []
        while True:
            message = await self.next(timeout)
            seen.append(message)
            if needle in message.splitlines():
                return seen

    def close(self) -> None:
        self.sock.close()


async def test_ready_watchdog_stopping(tmp_path: Path) -> None:
    listener = NotifyListener(tmp_path / "notify.sock")
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "400000"}
    daemon = DaemonProcess(tmp_path, env=env)
    try:
        await daemon.start()
        before_ready = await listener.until("READY=1")
        async with connect(daemon.ws_url):
            pass  # READY=1 came while the WebSocket port accepts connections
        assert not any("STOPPING=1" in m for m in before_ready)
        pings = 0
        while pings < 3:
            pings += (await listener.next(timeout=2.0)).splitlines().count("WATCHDOG=1")
        daemon.signal(signal.SIGTERM)
        await listener.until("STOPPING=1")
        assert await daemon.wait() == 0
    finally:
        listener.close()
        await daemon.stop()


async def test_no_notify_socket_means_no_messages(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path)
    await daemon.start()
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait() == 0
    assert not any("sd_notify" in line and "error" in line.lower() for line in daemon.log_lines)
