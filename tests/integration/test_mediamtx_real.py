"""End to end with real binaries.

* ``test_lavfi_camera_is_readable_over_rtsp`` needs ``mediamtx`` (plus ffmpeg/ffprobe) on
  PATH, else it is skipped with the reason printed: MediaMTX gets a minimal temporary
  config (API and RTSP over TCP on ephemeral 127.0.0.1 ports, every other server off),
  the test waits for its "listener opened" log lines instead of sleeping, provisions a
  lavfi camera and reads one frame back over RTSP.
* ``test_publisher_command_publishes_h264`` needs only ffmpeg: it runs the ``runOnDemand``
  command the way MediaMTX would (shell-split, ``$RTSP_PORT``/``$MTX_PATH`` expanded)
  against an ``ffmpeg -rtsp_flags listen`` receiver.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shlex
import shutil
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from camera_service.mediamtx.client import MediaMTXClient
from camera_service.mediamtx.monitor import MediaMTXMonitor
from camera_service.mediamtx.pathconf import camera_path_conf
from camera_service.mediamtx.paths import PathProvisioner, ProvisionAction


def _skip_unless(*binaries: str) -> pytest.MarkDecorator:
    missing = [b for b in binaries if shutil.which(b) is None]
    reason = f"skipped: {', '.join(missing)} not found on PATH"
    if missing:
        print(reason, file=sys.stderr)
    return pytest.mark.skipif(bool(missing), reason=reason)


needs_mediamtx = _skip_unless("mediamtx", "ffmpeg", "ffprobe")
needs_ffmpeg = _skip_unless("ffmpeg", "ffprobe")

START_TIMEOUT = 15.0
READ_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RealMediaMTX:
    api_url: str
    rtsp_port: int
    process: asyncio.subprocess.Process


def mediamtx_config(api_port: int, rtsp_port: int) -> dict[str, object]:
    """Keys from the reference mediamtx.yml; everything not needed is switched off."""
    return {
        "logLevel": "info",
        "api": True,
        "apiAddress": f"127.0.0.1:{api_port}",
        "rtsp": True,
        "rtspTransports": ["tcp"],
        "rtspAddress": f"127.0.0.1:{rtsp_port}",
        "rtmp": False,
        "hls": False,
        "webrtc": False,
        "srt": False,
        "moq": False,
        "playback": False,
        "metrics": False,
        "pprof": False,
        "paths": {},
    }


async def wait_for_listeners(proc: asyncio.subprocess.Process, needles: set[str]) -> None:
    """Read MediaMTX's log until every needle was seen (a listener-opened line each)."""
    assert proc.stdout is not None
    pending = set(needles)
    seen: list[str] = []
    while pending:
        line = (await proc.stdout.readline()).decode(errors="replace")
        if not line:
            raise RuntimeError("mediamtx exited during start-up:\n" + "".join(seen))
        seen.append(line)
        pending = {n for n in pending if n not in line}


async def drain(stream: asyncio.StreamReader | None) -> None:
    """Keep reading MediaMTX's log so its pipe never fills up."""
    if stream is None:
        return
    while await stream.readline():
        pass


@pytest.fixture
async def mediamtx(tmp_path: Path) -> AsyncIterator[RealMediaMTX]:
    api_port, rtsp_port = free_port(), free_port()
    config = tmp_path / "mediamtx.yml"
    config.write_text(yaml.safe_dump(mediamtx_config(api_port, rtsp_port)))
    proc = await asyncio.create_subprocess_exec(
        "mediamtx",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,
    )
    drainer: asyncio.Task[None] | None = None
    try:
        await asyncio.wait_for(
            wait_for_listeners(proc, {f"127.0.0.1:{api_port}", f"127.0.0.1:{rtsp_port}"}),
            START_TIMEOUT,
        )
        drainer = asyncio.create_task(drain(proc.stdout))
        yield RealMediaMTX(f"http://127.0.0.1:{api_port}", rtsp_port, proc)
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
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace") + err.decode(errors="replace")


@needs_mediamtx
async def test_lavfi_camera_is_readable_over_rtsp(mediamtx: RealMediaMTX, tmp_path: Path) -> None:
    async with MediaMTXClient(mediamtx.api_url) as client:
        up = asyncio.Event()
        monitor = MediaMTXMonitor(client, interval=0.5, on_up=up.set)
        await monitor.start()
        try:
            await asyncio.wait_for(up.wait(), 5)
        finally:
            await monitor.stop()

        prov = PathProvisioner(client)
        name = prov.name_for("lavfi0")
        conf = camera_path_conf("testsrc2=size=320x240:rate=10", "lavfi", close_after=2)
        assert await prov.ensure(name, conf) is ProvisionAction.ADDED
        assert await prov.ensure(name, conf) is ProvisionAction.UNCHANGED

        url = f"rtsp://127.0.0.1:{mediamtx.rtsp_port}/{name}"
        frame = tmp_path / "frame.png"
        code, log = await run(
            "ffmpeg", "-hide_banner", "-nostdin", "-y", "-rtsp_transport", "tcp",
            "-i", url, "-frames:v", "1", str(frame),
            timeout=READ_TIMEOUT,
        )  # fmt: skip
        assert code == 0, log
        assert frame.stat().st_size > 0

        code, out = await run(
            "ffprobe", "-v", "error", "-select_streams", "v:0",
            "-show_entries", "stream=width,height", "-of", "json", str(frame),
            timeout=READ_TIMEOUT,
        )  # fmt: skip
        assert code == 0, out
        stream = json.loads(out)["streams"][0]
        assert (stream["width"], stream["height"]) == (320, 240)

        listed = {p.name for p in await client.list_all_paths()}
        assert name in listed
        assert await prov.remove(name) is True


def expand_like_mediamtx(command: str, env: dict[str, str]) -> list[str]:
    """Split like go-shellquote, then expand $VAR / ${VAR} in each argument (os.Expand)."""

    def expand(arg: str) -> str:
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m.group(1) or m.group(2), ""), arg)

    return [expand(arg) for arg in shlex.split(command)]


@needs_ffmpeg
async def test_publisher_command_publishes_h264(tmp_path: Path) -> None:
    port = free_port()
    conf = camera_path_conf("testsrc2=size=320x240:rate=10", "lavfi")
    assert conf.run_on_demand is not None
    argv = expand_like_mediamtx(conf.run_on_demand, {"RTSP_PORT": str(port), "MTX_PATH": "cam"})
    assert argv[-1] == f"rtsp://127.0.0.1:{port}/cam"

    frame = tmp_path / "frame.png"
    receiver = await asyncio.create_subprocess_exec(
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-rtsp_flags", "listen",
        "-i", f"rtsp://127.0.0.1:{port}/cam", "-frames:v", "1", "-y", str(frame),
    )  # fmt: skip
    receiver_done = asyncio.ensure_future(receiver.wait())
    try:
        async with asyncio.timeout(READ_TIMEOUT):
            # Like runOnDemandRestart: restart the publisher until the receiver has its
            # frame (the first attempts may find the receiver not listening yet).
            while not receiver_done.done():
                publisher = await asyncio.create_subprocess_exec(
                    *argv, stderr=asyncio.subprocess.DEVNULL
                )
                publisher_done = asyncio.ensure_future(publisher.wait())
                await asyncio.wait(
                    {receiver_done, publisher_done}, return_when=asyncio.FIRST_COMPLETED
                )
                if publisher.returncode is None:
                    publisher.terminate()
                await publisher_done
    finally:
        if receiver.returncode is None:
            receiver.kill()
        await receiver_done
    assert receiver.returncode == 0
    code, out = await run(
        "ffprobe", "-v", "error", "-select_streams", "v:0",
        "-show_entries", "stream=width,height", "-of", "json", str(frame),
        timeout=READ_TIMEOUT,
    )  # fmt: skip
    assert code == 0, out
    stream = json.loads(out)["streams"][0]
    assert (stream["width"], stream["height"]) == (320, 240)
