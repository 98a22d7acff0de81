"""Continuous recording of a single-reader camera next to streaming, a manual recording and
snapshots, with a real MediaMTX (skipped with the reason printed when ``mediamtx`` is not on
PATH): the device keeps one reader (MediaMTX's publisher); the continuous recorder, the manual
recording and the viewer all read the camera's RTSP stream, and nothing cuts the segments."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from camera_service.storage.modes import ModeSettings
from tests.integration.test_mediamtx_real import (
    READ_TIMEOUT,
    RtspReader,
    daemon_overrides,
    lavfi,
    needs_mediamtx,
    wait_reconciled,
)
from tests.support.daemon import running_daemon
from tests.support.real_mediamtx import RealMediaMTX
from tests.support.waiting import wait_until

pytestmark = [needs_mediamtx, pytest.mark.timeout(120)]


@pytest.fixture
async def mediamtx(tmp_path: Path) -> AsyncIterator[RealMediaMTX]:
    work = tmp_path / "mediamtx"
    work.mkdir()
    async with RealMediaMTX(work) as server:
        yield server


async def test_continuous_shares_the_camera_with_streaming_recording_and_snapshots(
    tmp_path: Path, mediamtx: RealMediaMTX
) -> None:
    overrides = daemon_overrides(mediamtx, lavfi("cam0", exclusive=True))
    overrides["ffmpeg"] = {"preset": "ultrafast", "bitrate": "400k"}
    async with running_daemon(tmp_path, overrides) as daemon:
        await wait_reconciled(daemon, "cam0")
        nvr = daemon.app.nvr
        await nvr.set_mode("cam0", ModeSettings("continuous", 2, 1.0, 1.0))
        recorder = nvr.recorder("cam0")
        assert recorder is not None
        await wait_until(lambda: recorder.active, READ_TIMEOUT, "continuous recording")
        assert recorder.handle is not None and not recorder.handle.reader  # reads the stream
        assert any(arg.startswith("rtsp://") for arg in recorder.handle.argv)
        run = recorder.run
        base = f"rtsp://127.0.0.1:{mediamtx.ports.rtsp}"
        async with daemon.client("operator") as rpc:
            await rpc.call("start_streaming", {"device": "cam0"})
            async with RtspReader(f"{base}/cam0") as viewer:
                await viewer.more_frames(0)
                manual = await rpc.call("start_recording", {"device": "cam0", "format": "mkv"})
                shot = await rpc.call("take_snapshot", {"device": "cam0"})
                await viewer.more_frames(viewer.frames)
                stopped = await rpc.call("stop_recording", {"device": "cam0"})
                await rpc.call("stop_streaming", {"device": "cam0"})
        # None of the daemon's processes opened the device: MediaMTX's publisher is its reader.
        assert daemon.app.supervisor.peak_readers("cam0") == 0
        assert shot["status"] == "SUCCESS" and stopped["file_size"] > 0
        assert manual["filename"] == stopped["filename"]
        assert recorder.run == run and recorder.restarts == 0 and recorder.active
        segments = await nvr.segments("cam0")
        assert len([s for s in segments if s.complete]) >= 1
        await nvr.set_mode("cam0", ModeSettings("off", 2, 1.0, 1.0))
