"""End to end with a real MediaMTX (the release of shared/reference, v1.20.1).

Every test that needs ``mediamtx`` (plus ffmpeg/ffprobe) on PATH is skipped with the reason
printed when it is missing (CI has no MediaMTX binary; the fake-based suite covers the same
rules there). Each test starts its own MediaMTX with every listener on a free 127.0.0.1
port (:mod:`tests.support.real_mediamtx`) and waits for its "listener opened" log lines.

Covered: the start-up probe, version gate and a clear hint with ``api: false``; streaming
and recording transitions with a real RTSP reader attached and an FFmpeg recording reading
the stream (nothing is cut); recording in MediaMTX under ``TZ=Europe/Berlin`` (the file
announced exists, times are UTC, sizes are final after stop, ``kill -9`` of MediaMTX starts
a tracked new segment, an unwritable directory fails with -32050); reconcile twice is
unchanged; ``kill -9`` and restart bring the paths back within ``health_interval``; a
``mediamtx.yml`` path with a camera's name (even one camera-service once added) is left
alone. ``test_publisher_command_publishes_h264`` needs only ffmpeg: it runs the
``runOnDemand`` command the way MediaMTX would against an ``ffmpeg -rtsp_flags listen``.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import shutil
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from camera_service.client import RpcCallError
from camera_service.mediamtx.client import MediaMTXClient
from camera_service.mediamtx.monitor import MediaMTXMonitor, check_version
from camera_service.mediamtx.pathconf import camera_path_conf
from camera_service.mediamtx.paths import PathProvisioner, ProvisionAction
from camera_service.mediamtx.segments import fmp4_finalized
from camera_service.mediamtx.service import MediaMTXService
from camera_service.storage.names import stamp_from_name
from tests.support.daemon import RunningDaemon, running_daemon
from tests.support.real_mediamtx import Ports, RealMediaMTX, free_port
from tests.support.waiting import wait_until


def _skip_unless(*binaries: str) -> pytest.MarkDecorator:
    missing = [b for b in binaries if shutil.which(b) is None]
    reason = f"skipped: {', '.join(missing)} not found on PATH"
    if missing:
        print(reason, file=sys.stderr)
    return pytest.mark.skipif(bool(missing), reason=reason)


needs_mediamtx = _skip_unless("mediamtx", "ffmpeg", "ffprobe")
needs_ffmpeg = _skip_unless("ffmpeg", "ffprobe")

READ_TIMEOUT = 30.0
HEALTH_INTERVAL = 1.0


@pytest.fixture
async def mediamtx(tmp_path: Path) -> AsyncIterator[RealMediaMTX]:
    work = tmp_path / "mediamtx"
    work.mkdir()
    async with RealMediaMTX(work) as server:
        yield server


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

        url = f"rtsp://127.0.0.1:{mediamtx.ports.rtsp}/{name}"
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


# --- the daemon against a real MediaMTX ------------------------------------------------------


def lavfi(camera_id: str, *, exclusive: bool = False, rate: int = 10) -> dict[str, Any]:
    return {
        "id": camera_id,
        "input_format": "lavfi",
        "input": f"testsrc2=size=320x240:rate={rate}",
        "exclusive": exclusive,
    }


def daemon_overrides(server: RealMediaMTX, *cameras: dict[str, Any], **mtx: Any) -> dict[str, Any]:
    return {
        "mediamtx": {
            "enabled": True,
            "api_url": server.api_url,
            "rtsp_port": server.ports.rtsp,
            "hls_port": server.ports.hls,
            "webrtc_port": server.ports.webrtc,
            "health_interval": HEALTH_INTERVAL,
            "backoff_base": 0.2,
            "backoff_max": HEALTH_INTERVAL,
            "request_timeout": 2.0,
            "on_demand_close_after": 2,
            **mtx,
        },
        "cameras": {"sources": list(cameras)},
    }


def service_of(daemon: RunningDaemon) -> MediaMTXService:
    return daemon.app.mediamtx


async def wait_reconciled(daemon: RunningDaemon, *names: str) -> None:
    service = service_of(daemon)
    await asyncio.wait_for(service.reconciled.wait(), READ_TIMEOUT)
    await wait_until(lambda: set(names) <= service.ownership.names(), what=f"paths {names}")


class RtspReader:
    """A real viewer: FFmpeg reading the stream over RTSP/TCP and counting frames."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.proc: asyncio.subprocess.Process | None = None
        self.frames = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RtspReader:
        self.proc = await asyncio.create_subprocess_exec(
            "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
            "-rtsp_transport", "tcp", "-i", self.url, "-map", "0", "-c", "copy",
            "-f", "null", "-", "-progress", "pipe:1",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        self._task = asyncio.create_task(self._progress())
        return self

    async def _progress(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            if line.startswith(b"frame="):
                self.frames = int(line.split(b"=", 1)[1] or 0)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def more_frames(self, than: int) -> None:
        await wait_until(lambda: self.frames > than or not self.alive, READ_TIMEOUT, "frames")
        assert self.alive, f"the reader of {self.url} was cut"

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()
        if self._task is not None:
            await self._task


async def ffprobe_duration(path: Path) -> float:
    code, out = await run(
        "ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", str(path),
        timeout=READ_TIMEOUT,
    )  # fmt: skip
    assert code == 0, out
    return float(json.loads(out)["format"]["duration"])


@needs_mediamtx
async def test_probe_version_gate_and_api_off(tmp_path: Path) -> None:
    async with RealMediaMTX(tmp_path) as server, MediaMTXClient(server.api_url) as client:
        monitor = MediaMTXMonitor(client)
        assert await monitor.probe_once()
        status = monitor.status()
        assert status["version"] == "v1.20.1" and check_version(status["version"]) is None
        assert status["started"] and status["hint"] is None
    off = tmp_path / "off"
    off.mkdir()
    async with RealMediaMTX(off, api=False) as server, MediaMTXClient(server.api_url) as client:
        monitor = MediaMTXMonitor(client, probe_timeout=1.0)
        assert not await monitor.probe_once()
        assert "api: yes" in (monitor.status()["hint"] or "")
        assert monitor.status()["status"] == "unhealthy"


@needs_mediamtx
async def test_streaming_and_recording_never_cut_readers(
    tmp_path: Path, mediamtx: RealMediaMTX
) -> None:
    """A viewer on ``view0`` and an FFmpeg recording reading ``rec0``'s stream stay
    connected across start/stop streaming and start/stop recording in MediaMTX."""
    overrides = daemon_overrides(
        mediamtx, lavfi("view0"), lavfi("rec0", exclusive=True), record_with="mediamtx"
    )
    async with running_daemon(tmp_path, overrides) as daemon:
        await wait_reconciled(daemon, "view0", "rec0")
        base = f"rtsp://127.0.0.1:{mediamtx.ports.rtsp}"
        async with daemon.client("operator") as rpc, RtspReader(f"{base}/view0") as viewer:
            await viewer.more_frames(0)
            # rec0 is exclusive: a non-fMP4 recording is FFmpeg reading its MediaMTX stream.
            mkv = await rpc.call("start_recording", {"device": "rec0", "format": "mkv"})
            recording = daemon.app.recordings.process("rec0")
            assert recording is not None and not recording.reader  # reads the stream

            for step in range(2):
                await rpc.call("start_streaming", {"device": "view0"})
                await rpc.call("start_streaming", {"device": "rec0"})
                await viewer.more_frames(viewer.frames)
                stop = await rpc.call("stop_streaming", {"device": "rec0"})
                assert stop["stream_continues"] is True  # the FFmpeg recording reads it
                await rpc.call("stop_streaming", {"device": "view0"})
                started = await rpc.call("start_recording", {"device": "view0"})  # in MediaMTX
                assert (
                    Path(daemon.app.config.storage.recordings_dir) / started["filename"]
                ).exists()
                await viewer.more_frames(viewer.frames)
                await rpc.call("stop_recording", {"device": "view0"})
                await viewer.more_frames(viewer.frames)
                assert recording.running, f"the stream recording was cut (round {step})"

            stopped = await rpc.call("stop_recording", {"device": "rec0"})
            assert viewer.alive
        mkv_path = Path(daemon.app.config.storage.recordings_dir) / mkv["filename"]
        assert stopped["file_size"] == mkv_path.stat().st_size > 0
        assert await ffprobe_duration(mkv_path) > 1.0


@needs_mediamtx
async def test_recording_in_mediamtx_under_berlin_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    work = tmp_path / "mediamtx"
    work.mkdir()
    try:
        async with RealMediaMTX(work, env={"TZ": "Europe/Berlin"}) as server:
            overrides = daemon_overrides(server, lavfi("cam0"), record_with="mediamtx")
            async with running_daemon(tmp_path, overrides) as daemon:
                await wait_reconciled(daemon, "cam0")
                await _record_through_restart(daemon, server)
                await _unwritable_fails(daemon)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


async def _record_through_restart(daemon: RunningDaemon, server: RealMediaMTX) -> None:
    rec_dir = Path(daemon.app.config.storage.recordings_dir)
    async with daemon.client("operator") as rpc:
        before = datetime.now(UTC)
        started = await rpc.call("start_recording", {"device": "cam0"})
        first = rec_dir / started["filename"]
        assert first.exists(), "the announced file must exist"
        stamp = stamp_from_name(started["filename"])
        start_time = datetime.fromisoformat(started["start_time"].replace("Z", "+00:00"))
        assert stamp is not None and abs((stamp - before).total_seconds()) < 10  # UTC, not Berlin
        assert abs((start_time - stamp).total_seconds()) < 1

        await server.kill()  # kill -9 mid-recording
        await server.start()
        await wait_until(
            lambda: len(list(rec_dir.glob("cam0_*.mp4"))) >= 2,
            READ_TIMEOUT,
            "a new segment after the MediaMTX restart",
        )
        listing = await rpc.call("list_recordings", {"device": "cam0"})
        assert len(listing["files"]) >= 2
        stopped = await rpc.call("stop_recording", {"device": "cam0"})
    segments = await asyncio.to_thread(lambda: sorted(rec_dir.glob("cam0_*.mp4")))
    assert stopped["filename"] == first.name
    assert stopped["file_size"] == sum(p.stat().st_size for p in segments)
    last = segments[-1]
    assert fmp4_finalized(last.read_bytes()[:4096]), "stop returned before MediaMTX closed it"
    assert await ffprobe_duration(last) > 0.5
    assert not list((rec_dir / ".mediamtx").iterdir())


async def _unwritable_fails(daemon: RunningDaemon) -> None:
    staging = Path(daemon.app.config.storage.recordings_dir) / ".mediamtx"
    shutil.rmtree(staging)
    staging.write_text("a file where MediaMTX needs a directory")
    started = time.perf_counter()
    async with daemon.client("operator") as rpc:
        with pytest.raises(RpcCallError) as info:
            await rpc.call("start_recording", {"device": "cam0"})
        assert info.value.code == -32050 and info.value.data["dependency"] == "mediamtx"
        assert "wrote no recording" in info.value.data["detail"]
        assert (await rpc.call("get_camera_status", {"device": "cam0"}))["recording"] is None
    assert time.perf_counter() - started < 20
    staging.unlink()


@needs_mediamtx
async def test_reconcile_twice_restart_and_yml_paths(tmp_path: Path) -> None:
    """Reconcile twice → unchanged; kill -9 + restart → paths back within health_interval;
    a mediamtx.yml path named like a camera, even one we added before, is left alone."""
    work = tmp_path / "mediamtx"
    work.mkdir()
    ports = Ports()
    yml_path = {"source": "rtsp://operator.example/own"}
    async with RealMediaMTX(work, ports=ports, paths={"op0": yml_path}) as server:
        overrides = daemon_overrides(server, lavfi("cam0"), lavfi("op0"), lavfi("cam1"))
        async with running_daemon(tmp_path, overrides) as daemon:
            service = service_of(daemon)
            await wait_reconciled(daemon, "cam0", "cam1")
            assert "op0" in service.health().details["conflicts"]
            first = await service.reconcile()
            second = await service.reconcile()
            assert first is not None and second is not None
            assert (second.added, second.replaced, second.reloaded, second.removed) == (
                [],
                [],
                [],
                [],
            )
            assert second.unchanged == ["cam0", "cam1"]

            service.reconciled.clear()
            await server.kill()
            # MediaMTX comes back with cam1 in its configuration file (the operator's now).
            server.config["paths"]["cam1"] = {"source": "rtsp://operator.example/cam1"}
            server.config_file.write_text(yaml.safe_dump(server.config))
            await server.start()
            back = time.perf_counter()
            await asyncio.wait_for(service.reconciled.wait(), 2 * HEALTH_INTERVAL + 2)
            elapsed = time.perf_counter() - back
            print(f"paths back {elapsed:.2f} s after the MediaMTX restart")
            async with MediaMTXClient(server.api_url) as client:
                listed = {p.name for p in await client.list_all_config_paths()}
                cam1 = await client.get_config_path("cam1")
                op0 = await client.get_config_path("op0")
            assert {"cam0", "cam1", "op0"} <= listed
            assert cam1.source == "rtsp://operator.example/cam1"
            assert op0.source == "rtsp://operator.example/own"
            await wait_until(lambda: "cam1" in service.health().details["conflicts"], READ_TIMEOUT)
            assert not service.ownership.owns("cam1")
