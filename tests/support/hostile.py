"""Hostile clients over raw sockets, for the abuse tests and bench/abuse.py.

A `HostileConnection` is a bare asyncio protocol: it can stop reading (a peer whose receive
window fills), answer pings or not, send partial HTTP heads, and bind a chosen loopback
source address (127.0.0.0/8 is all local on Linux) so per-address limits can be exercised
from one machine.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import socket
from typing import cast

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def frame(opcode: int, payload: bytes) -> bytes:
    """A client frame with a zero mask key (valid per RFC 6455, and no copy to mask)."""
    length = len(payload)
    if length < 126:
        header = bytes((0x80 | opcode, 0x80 | length))
    elif length < 1 << 16:
        header = bytes((0x80 | opcode, 0x80 | 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + length.to_bytes(8, "big")
    return header + b"\0\0\0\0" + payload


class HostileConnection(asyncio.Protocol):
    """Raw TCP client: an HTTP head, then WebSocket frames; tracks flow control.

    `answer_pings`: reply to pings with pongs (a live peer) or not. `keep`: keep the text
    frames received (`texts`) and the close code (`close_code`); otherwise they are dropped."""

    def __init__(self, answer_pings: bool = False, keep: bool = False) -> None:
        loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.head: asyncio.Future[bytes] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.texts: list[bytes] = []
        self.close_code: int | None = None
        self.received = 0
        self._buffer = bytearray()
        self._writable = asyncio.Event()
        self._writable.set()
        self._answer_pings = answer_pings
        self._keep = keep
        self._upgraded = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        self._buffer += data
        if not self._upgraded:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            self._upgraded = True
            if not self.head.done():
                self.head.set_result(bytes(self._buffer[:end]))
            del self._buffer[: end + 4]
        self._frames()

    def _frames(self) -> None:
        buffer = self._buffer
        while len(buffer) >= 2:
            length, start = buffer[1] & 0x7F, 2
            if length == 126:
                if len(buffer) < 4:
                    return
                length, start = int.from_bytes(buffer[2:4], "big"), 4
            elif length == 127:
                if len(buffer) < 10:
                    return
                length, start = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < start + length:
                return
            opcode = buffer[0] & 0x0F
            payload = bytes(buffer[start : start + length])
            del buffer[: start + length]
            if opcode == 9 and self._answer_pings and self.transport is not None:
                self.transport.write(frame(0xA, payload))
            elif opcode == 8 and len(payload) >= 2:
                self.close_code = int.from_bytes(payload[:2], "big")
            elif opcode == 1 and self._keep:
                self.texts.append(payload)

    def send_text(self, text: str | bytes) -> None:
        assert self.transport is not None
        self.transport.write(frame(1, text.encode() if isinstance(text, str) else text))

    def eof_received(self) -> bool:
        return False

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self._writable.set()
        if not self.head.done():
            self.head.set_exception(ConnectionError("closed before the handshake answer"))
        if not self.lost.done():
            self.lost.set_result(None)

    async def writable(self) -> None:
        await self._writable.wait()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


async def open_tcp(
    source: str,
    port: int,
    *,
    rcvbuf: int | None = None,
    answer_pings: bool = False,
    keep: bool = False,
) -> HostileConnection:
    """A TCP connection to 127.0.0.1:`port` from `source` (a 127.x.y.z address)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        sock.bind((source, 0))
        await loop.sock_connect(sock, ("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    _, protocol = await loop.create_connection(
        lambda: HostileConnection(answer_pings, keep), sock=sock
    )
    return protocol


def upgrade_request(port: int) -> tuple[bytes, bytes]:
    key = base64.b64encode(os.urandom(16))
    request = (
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    return request, base64.b64encode(hashlib.sha1(key + WS_GUID).digest())


async def ws_open(
    source: str,
    port: int,
    *,
    rcvbuf: int | None = None,
    answer_pings: bool = False,
    keep: bool = False,
) -> HostileConnection | None:
    """A WebSocket connection past its handshake; None when refused or dropped."""
    try:
        conn = await open_tcp(source, port, rcvbuf=rcvbuf, answer_pings=answer_pings, keep=keep)
    except OSError:
        return None
    assert conn.transport is not None
    request, accept = upgrade_request(port)
    conn.transport.write(request)
    try:
        head = await asyncio.wait_for(conn.head, 10)
    except (ConnectionError, TimeoutError):
        conn.transport.abort()
        return None
    if not head.startswith(b"HTTP/1.1 101") or accept not in head:
        conn.transport.abort()
        return None
    return conn
