"""A real MediaMTX process for tests: every listener on a free 127.0.0.1 port.

:func:`mediamtx_config` writes a config from the keys of the reference ``mediamtx.yml``
(v1.20.1): API, RTSP (TCP only, so no RTP/RTCP UDP ports), and on request HLS, WebRTC (its
HTTP listener plus a UDP/ICE listener on its own free port) and playback; RTMP, SRT, MoQ,
metrics and pprof are off. :class:`RealMediaMTX` starts it, waits for its "listener opened"
log lines (no sleeping), can be killed with SIGKILL and started again on the same ports, and
keeps draining the log (kept in memory, bounded) so the pipe never fills up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

START_TIMEOUT = 15.0
LOG_LINES = 2000


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def have_mediamtx() -> bool:
    return shutil.which("mediamtx") is not None


@dataclass
class Ports:
    api: int = field(default_factory=free_port)
    rtsp: int = field(default_factory=free_port)
    hls: int = field(default_factory=free_port)
    webrtc: int = field(default_factory=free_port)
    webrtc_udp: int = field(default_factory=lambda: free_port(socket.SOCK_DGRAM))
    playback: int = field(default_factory=free_port)


def mediamtx_config(
    ports: Ports,
    *,
    api: bool = True,
    hls: bool = False,
    webrtc: bool = False,
    playback: bool = False,
    paths: Mapping[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Keys from the reference mediamtx.yml; everything not needed is switched off."""
    conf: dict[str, Any] = {
        "logLevel": "info",
        "api": api,
        "apiAddress": f"127.0.0.1:{ports.api}",
        "rtsp": True,
        "rtspTransports": ["tcp"],
        "rtspAddress": f"127.0.0.1:{ports.rtsp}",
        "rtmp": False,
        "hls": hls,
        "hlsAddress": f"127.0.0.1:{ports.hls}",
        "webrtc": webrtc,
        "webrtcAddress": f"127.0.0.1:{ports.webrtc}",
        "webrtcLocalUDPAddress": f"127.0.0.1:{ports.webrtc_udp}",
        "webrtcLocalTCPAddress": "",
        "webrtcIPsFromInterfaces": False,
        "webrtcAdditionalHosts": ["127.0.0.1"],
        "srt": False,
        "moq": False,
        "playback": playback,
        "playbackAddress": f"127.0.0.1:{ports.playback}",
        "metrics": False,
        "pprof": False,
        "paths": dict(paths or {}),
    }
    conf.update(extra)
    return conf


class RealMediaMTX:
    """One MediaMTX process (restartable on the same ports and config)."""

    def __init__(
        self,
        workdir: Path,
        *,
        ports: Ports | None = None,
        env: Mapping[str, str] | None = None,
        **config: Any,
    ) -> None:
        self.workdir = workdir
        self.ports = ports or Ports()
        self.config = mediamtx_config(self.ports, **config)
        self.config_file = workdir / "mediamtx.yml"
        self.config_file.write_text(yaml.safe_dump(self.config))
        self.env = {**os.environ, **(env or {})}
        self.process: asyncio.subprocess.Process | None = None
        self.log: deque[str] = deque(maxlen=LOG_LINES)
        self._drainer: asyncio.Task[None] | None = None
        self.starts = 0

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.api}"

    def listeners(self) -> set[str]:
        needles = {f"127.0.0.1:{self.ports.rtsp}"}
        if self.config["api"]:
            needles.add(f"127.0.0.1:{self.ports.api}")
        for key, port in (("hls", self.ports.hls), ("webrtc", self.ports.webrtc)):
            if self.config[key]:
                needles.add(f"127.0.0.1:{port}")
        return needles

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            "mediamtx",
            str(self.config_file),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=self.workdir,
            env=self.env,
        )
        self.starts += 1
        await asyncio.wait_for(self._wait_for(self.listeners()), START_TIMEOUT)
        self._drainer = asyncio.create_task(self._drain())

    async def _wait_for(self, needles: set[str]) -> None:
        assert self.process is not None and self.process.stdout is not None
        pending = set(needles)
        while pending:
            line = (await self.process.stdout.readline()).decode(errors="replace")
            if not line:
                raise RuntimeError("mediamtx exited during start-up:\n" + "".join(self.log))
            self.log.append(line)
            pending = {n for n in pending if n not in line}

    async def _drain(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while line := await self.process.stdout.readline():
            self.log.append(line.decode(errors="replace"))

    async def kill(self) -> None:
        """SIGKILL (like a crash): no cleanup in MediaMTX."""
        await self._end(signal.SIGKILL)

    async def stop(self) -> None:
        await self._end(signal.SIGTERM)

    async def _end(self, sig: int) -> None:
        proc = self.process
        if proc is not None and proc.returncode is None:
            proc.send_signal(sig)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._drainer is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._drainer, 5)
            self._drainer = None

    async def __aenter__(self) -> RealMediaMTX:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
