"""The daemon SIGKILLed mid-recording: FFmpeg dies with it and the fmp4 file stays playable."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import psutil

from camera_service.client import CameraClient
from tests.support.daemon import DaemonProcess
from tests.support.media import ffprobe
from tests.support.waiting import wait_until

SOURCE = {
    "id": "lab0",
    "input_format": "lavfi",
    "input": "testsrc2=size=320x240:rate=15",
    "exclusive": True,
}


async def test_sigkilled_daemon_takes_ffmpeg_along_and_keeps_the_file(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path, {"cameras": {"sources": [SOURCE]}})
    key = daemon.cli("keys", "create", "--role", "operator", "--name", "k", "--json").stdout
    await daemon.start()
    try:
        async with CameraClient(daemon.ws_url) as client:
            await client.authenticate(json.loads(key)["key"])
            started = await client.call("start_recording", {"device": "lab0"})
            daemon_process = psutil.Process(daemon.proc.pid)  # type: ignore[union-attr]
            ffmpegs = [p for p in daemon_process.children(recursive=True) if "ffmpeg" in p.name()]
            assert len(ffmpegs) == 1
            path = tmp_path / "recordings" / started["filename"]
            await wait_until(
                lambda: path.exists() and path.stat().st_size > 20_000, what="recording grows"
            )
            daemon.signal(signal.SIGKILL)
        await daemon.wait()
        _, alive = await asyncio.to_thread(psutil.wait_procs, ffmpegs, 10)
        assert not alive, "FFmpeg outlived the daemon"
        assert float(ffprobe(path)["format"]["duration"]) > 0
    finally:
        await daemon.stop()
