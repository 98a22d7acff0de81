"""The media side of the fake MediaMTX: RTSP readers and recorded segment files.

* :class:`FakeRTSPServer` accepts RTSP connections (a TCP listener on a free port). A
  connection that asks for an existing path is a reader of it: the server never answers
  (an FFmpeg reader then simply waits), and the fake closes the connection when the path
  restarts or is deleted, as MediaMTX closes every reader of a closed path
  (internal/core/path.go, close → readers removed). A request for a path that does not
  exist gets ``404 Not Found`` (internal/servers/rtsp/session.go).
* :func:`encode_record_path` and :func:`segment_head` write what MediaMTX's recorder
  writes: a file named from the first sample's time (internal/recordstore/path.go,
  ``Path.Encode``, in the process's local time zone) that starts with ``ftyp`` + ``moov``
  / ``mvhd``, whose duration is filled in when the segment is closed
  (internal/recorder/format_fmp4_segment.go, ``writeDuration``).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Callable
from datetime import datetime
from urllib.parse import urlsplit

HEADER_LIMIT = 8192
HEADER_TIMEOUT_S = 5.0

ReaderHook = Callable[[str, asyncio.StreamWriter], bool]
LeaveHook = Callable[[str, asyncio.StreamWriter], None]


class FakeRTSPServer:
    """RTSP listener whose connections count as readers of the path they ask for."""

    def __init__(self, on_reader: ReaderHook, on_leave: LeaveHook, host: str = "127.0.0.1"):
        self._on_reader = on_reader
        self._on_leave = on_leave
        self.host = host
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        if self._server is not None:
            return
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        server, self._server = self._server, None
        for writer in list(self._writers):
            writer.close()
        if server is not None:
            server.close()
            await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        name: str | None = None
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEADER_TIMEOUT_S)
            if len(head) > HEADER_LIMIT:
                return
            parts = head.split(b"\r\n", 1)[0].decode(errors="replace").split(" ")
            if len(parts) != 3:
                return
            name = urlsplit(parts[1]).path.strip("/")
            if not self._on_reader(name, writer):
                writer.write(b"RTSP/1.0 404 Not Found\r\nCSeq: 1\r\n\r\n")
                await writer.drain()
                name = None
                return
            while await reader.read(4096):  # a reader: keep it until either side closes
                pass
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            if name is not None:
                self._on_leave(name, writer)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def encode_record_path(pattern: str, path: str, start: datetime) -> str:
    """internal/recordstore/path.go, ``Path.Encode`` (``start`` in local time)."""
    local = start.astimezone()
    offset = local.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    zone = (
        "Z"
        if minutes == 0
        else f"{'+' if minutes > 0 else '-'}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
    )
    for key, value in (
        ("%path", path),
        ("%Y", f"{local.year}"),
        ("%m", f"{local.month:02d}"),
        ("%d", f"{local.day:02d}"),
        ("%H", f"{local.hour:02d}"),
        ("%M", f"{local.minute:02d}"),
        ("%S", f"{local.second:02d}"),
        ("%f", f"{local.microsecond:06d}"),
        ("%z", zone),
        ("%s", f"{int(start.timestamp())}"),
    ):
        pattern = pattern.replace(key, value)
    return pattern


def segment_head(duration_ms: int) -> bytes:
    """``ftyp`` and a ``moov`` starting with a version-0 ``mvhd`` (timescale 1000)."""
    ftyp = struct.pack(">I", 24) + b"ftypmp42" + struct.pack(">I", 1) + b"mp41mp42"
    body = bytes(4) + bytes(8) + struct.pack(">II", 1000, duration_ms) + bytes(80)
    mvhd = struct.pack(">I", 8 + len(body)) + b"mvhd" + body
    moov = struct.pack(">I", 8 + len(mvhd)) + b"moov" + mvhd
    return ftyp + moov


def finalize_segment(path: str, duration_ms: int) -> None:
    """Write the duration into the segment's ``mvhd`` as MediaMTX does when closing it."""
    with contextlib.suppress(OSError), open(path, "r+b") as fh:
        head = fh.read(len(segment_head(0)))
        if len(head) < 60:
            return
        fh.seek(24 + 8 + 24)
        fh.write(struct.pack(">I", max(duration_ms, 1)))
