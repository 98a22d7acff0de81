"""A daemon and a real MediaMTX wired for stream access control, for tests and benchmarks.

The daemon starts first (MediaMTX down: it probes with backoff), then MediaMTX with a
temporary ``mediamtx.yml`` whose ``authHTTPAddress`` points at the daemon's
``POST /mediamtx/auth``. Every MediaMTX listener is on its own free 127.0.0.1 port (RTSP over
TCP only, so no fixed RTP/RTCP ports), and what is not used is off. The stack is ready once
the daemon has reconciled the camera paths with MediaMTX up. Nothing sleeps: waits are on
MediaMTX's log lines and the daemon's events, with deadlines.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.daemon import RunningDaemon, running_daemon

START_TIMEOUT = 20.0
LAVFI_CAMERA = {
    "id": "cam0",
    "name": "Test pattern",
    "input_format": "lavfi",
    "input": "testsrc2=size=320x240:rate=15",
}


def have_real_mediamtx() -> bool:
    return all(shutil.which(b) for b in ("mediamtx", "ffmpeg", "ffprobe"))


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Ports:
    api: int
    rtsp: int
    hls: int
    webrtc: int
    webrtc_udp: int

    @classmethod
    def pick(cls) -> Ports:
        return cls(free_port(), free_port(), free_port(), free_port(), free_port(socket.SOCK_DGRAM))


def mediamtx_yaml(ports: Ports, auth_address: str | None) -> dict[str, Any]:
    """``auth_address`` None: MediaMTX's default (internal, anyone reads and publishes)."""
    conf: dict[str, Any] = {
        "logLevel": "info",
        "api": True,
        "apiAddress": f"127.0.0.1:{ports.api}",
        "rtsp": True,
        "rtspTransports": ["tcp"],
        "rtspAddress": f"127.0.0.1:{ports.rtsp}",
        "rtspAuthMethods": ["basic"],
        "rtmp": False,
        "hls": True,
        "hlsAddress": f"127.0.0.1:{ports.hls}",
        "hlsVariant": "mpegts",
        "webrtc": True,
        "webrtcAddress": f"127.0.0.1:{ports.webrtc}",
        "webrtcLocalUDPAddress": f"127.0.0.1:{ports.webrtc_udp}",
        "webrtcIPsFromInterfaces": False,
        "webrtcAdditionalHosts": ["127.0.0.1"],
        "srt": False,
        "moq": False,
        "playback": False,
        "metrics": False,
        "pprof": False,
        # A catch-all path, as many installations have: requests for paths that are no
        # camera then reach the daemon (which refuses them) instead of MediaMTX's 400.
        "paths": {"all_others": {}},
    }
    if auth_address is not None:
        conf.update(
            authMethod="http",
            authHTTPAddress=auth_address,
            authHTTPExclude=[],
        )
    return conf


@dataclass
class Stack:
    daemon: RunningDaemon
    ports: Ports
    process: asyncio.subprocess.Process
    log: list[str]

    def url(self, kind: str, path: str = "cam0") -> str:
        if kind == "rtsp":
            return f"rtsp://127.0.0.1:{self.ports.rtsp}/{path}"
        if kind == "hls":
            return f"http://127.0.0.1:{self.ports.hls}/{path}/index.m3u8"
        return f"http://127.0.0.1:{self.ports.webrtc}/{path}"


async def _wait_for_listeners(
    proc: asyncio.subprocess.Process, needles: set[str], log: list[str]
) -> None:
    assert proc.stdout is not None
    pending = set(needles)
    while pending:
        line = (await proc.stdout.readline()).decode(errors="replace")
        if not line:
            raise RuntimeError("mediamtx exited during start-up:\n" + "".join(log))
        log.append(line)
        pending = {n for n in pending if n not in line}


async def _drain(proc: asyncio.subprocess.Process, log: list[str]) -> None:
    assert proc.stdout is not None
    while line := await proc.stdout.readline():
        log.append(line.decode(errors="replace"))
        del log[:-500]  # bounded


@asynccontextmanager
async def stream_auth_stack(
    tmp_path: Path,
    *,
    stream_auth: bool = True,
    exclusive: bool = False,
    extra: dict[str, Any] | None = None,
) -> AsyncIterator[Stack]:
    """Daemon (viewer/operator/admin keys in ``daemon.keys``) plus real MediaMTX.

    ``exclusive``: the camera is single-reader, so the daemon's own recordings and snapshots
    read its MediaMTX stream (through the access control too) while it is published."""
    ports = Ports.pick()
    overrides: dict[str, Any] = {
        "mediamtx": {
            "enabled": True,
            "api_url": f"http://127.0.0.1:{ports.api}",
            "public_host": "127.0.0.1",
            "rtsp_port": ports.rtsp,
            "hls_port": ports.hls,
            "webrtc_port": ports.webrtc,
            "health_interval": 0.5,
            "backoff_base": 0.05,
            "backoff_max": 0.2,
            "stream_auth": stream_auth,
        },
        "cameras": {"sources": [{**LAVFI_CAMERA, "exclusive": exclusive}]},
        **(extra or {}),
    }
    async with running_daemon(tmp_path, overrides) as daemon:
        auth = f"{daemon.http_url}/mediamtx/auth" if stream_auth else None
        conf = tmp_path / "mediamtx.yml"
        conf.write_text(yaml.safe_dump(mediamtx_yaml(ports, auth)))
        daemon.app.mediamtx.reconciled.clear()
        proc = await asyncio.create_subprocess_exec(
            "mediamtx", str(conf), cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        log: list[str] = []
        drainer: asyncio.Task[None] | None = None
        try:
            needles = {f"127.0.0.1:{p}" for p in (ports.api, ports.rtsp, ports.hls, ports.webrtc)}
            await asyncio.wait_for(_wait_for_listeners(proc, needles, log), START_TIMEOUT)
            drainer = asyncio.create_task(_drain(proc, log))
            await asyncio.wait_for(daemon.app.mediamtx.reconciled.wait(), START_TIMEOUT)
            yield Stack(daemon, ports, proc, log)
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 10)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
            if drainer is not None:
                drainer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await drainer


async def run(*argv: str, timeout: float) -> tuple[int, str]:
    """Run a command to completion (killed at ``timeout``); exit code and all its output."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return -9, "timed out"
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace") + err.decode(errors="replace")


async def ffprobe(url: str, timeout: float = 20.0) -> tuple[int, str]:
    """ffprobe the first video stream of ``url`` (RTSP over TCP); its codec name on stdout."""
    args = ["-rtsp_transport", "tcp"] if url.startswith("rtsp") else []
    return await run(
        "ffprobe", "-v", "error", *args, "-select_streams", "v:0",
        "-show_entries", "stream=codec_name", "-of", "csv=p=0", url, timeout=timeout,
    )  # fmt: skip
