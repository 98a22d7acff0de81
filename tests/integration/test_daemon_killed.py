"""The daemon SIGKILLed mid-recording: FFmpeg dies with it and the fmp4 file stays playable."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import psutil

from camera_service.client import CameraClient
from camera_service.storage.mediainfo import mp4_top_level_boxes
from tests.support.daemon import DaemonProcess
from tests.support.media import ffmpeg_children, ffprobe
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
            ffmpegs = _recorders(daemon)
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


def _recorders(daemon: DaemonProcess) -> list[psutil.Process]:
    """The recording FFmpeg children (not probes the daemon may run at start)."""
    return ffmpeg_children(psutil.Process(daemon.proc.pid), with_arg="-progress")  # type: ignore[union-attr]


async def test_sigkilled_plain_mp4_recording_is_playable_and_recovered_at_start(
    tmp_path: Path,
) -> None:
    """Item 16: format mp4 survives a SIGKILL (written fragmented) and the next start remuxes
    it into a regular MP4; the dead daemon's frame directory is removed at that start."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {"TMPDIR": str(tmp)}
    overrides = {"cameras": {"sources": [SOURCE]}}
    daemon = DaemonProcess(tmp_path, overrides, env=env)
    key = json.loads(
        daemon.cli("keys", "create", "--role", "operator", "--name", "k", "--json").stdout
    )
    await daemon.start()
    try:
        async with CameraClient(daemon.ws_url) as client:
            await client.authenticate(key["key"])
            started = await client.call("start_recording", {"device": "lab0", "format": "mp4"})
            ffmpegs = _recorders(daemon)
            path = tmp_path / "recordings" / started["filename"]
            await wait_until(
                lambda: path.exists() and path.stat().st_size > 20_000, what="recording grows"
            )
            pid = daemon.proc.pid  # type: ignore[union-attr]
            frames = list(tmp.glob(f"camera-service-frames-{pid}-*"))
            assert len(frames) == 1
            daemon.signal(signal.SIGKILL)
        await daemon.wait()
        _, alive = await asyncio.to_thread(psutil.wait_procs, ffmpegs, 10)
        assert not alive
    finally:
        await daemon.stop()
    # Playable as it is, right after the kill (the old regular mp4 had no index yet).
    assert float(ffprobe(path)["format"]["duration"]) > 0
    marker = path.with_name(f".{path.name}.remux")
    assert marker.exists() and frames[0].exists()

    again = DaemonProcess(tmp_path, overrides, env=env)
    await again.start()
    try:
        await again.wait_for_log("recovered recording", timeout=30)
        assert not marker.exists()
        boxes = mp4_top_level_boxes(path)
        assert "moov" in boxes and "moof" not in boxes, boxes  # a regular MP4 now
        assert float(ffprobe(path)["format"]["duration"]) > 0
        assert not frames[0].exists()
        assert sorted(p.name for p in (tmp_path / "recordings").iterdir()) == [path.name]
    finally:
        await again.stop()
