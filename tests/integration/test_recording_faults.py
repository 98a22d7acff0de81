"""Recording faults with real FFmpeg (issue 10, items 15 and 16): a hung FFmpeg fails the
start; plain mp4 recordings survive a SIGKILL of the daemon."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from camera_service.client import RpcCallError
from tests.support.daemon import RunningDaemon, running_daemon

LAB = {"id": "lab0", "input_format": "lavfi", "input": "testsrc2=size=320x240:rate=15"}


@pytest.fixture
async def hung(tmp_path: Path) -> AsyncIterator[RunningDaemon]:
    """A camera whose FFmpeg never gets a byte: its input is a FIFO nobody writes to."""
    fifo = tmp_path / "silent.fifo"
    os.mkfifo(fifo)
    hung_source = {"id": "hung0", "input_format": "mjpeg", "input": str(fifo)}
    overrides: dict[str, Any] = {
        "cameras": {"sources": [hung_source, LAB]},
        "ffmpeg": {"start_timeout": 1.0},
    }
    async with running_daemon(tmp_path, overrides) as daemon:
        yield daemon


async def test_hung_ffmpeg_fails_the_start_and_leaves_no_file(hung: RunningDaemon) -> None:
    recordings = hung.app.config.storage.recordings_dir
    async with hung.client("operator") as client:
        with pytest.raises(RpcCallError) as info:
            await client.call("start_recording", {"device": "hung0", "format": "mp4"})
        error = info.value
        assert error.code == -32050
        assert error.data["dependency"] == "ffmpeg"
        assert "no frame from the camera within 1 s" in error.data["detail"]
        assert hung.app.recordings.active("hung0") is None
        assert hung.app.supervisor.running("hung0") == []  # the stuck process is gone
        assert (await client.call("list_recordings"))["total"] == 0
        assert sorted(p.name for p in recordings.iterdir() if not p.name.startswith(".")) == []
        with pytest.raises(RpcCallError) as info:
            await client.call("stop_recording", {"device": "hung0"})
        assert info.value.code == -32020
        # The other camera is unaffected, and its recording has frames when it answers.
        started = await client.call("start_recording", {"device": "lab0"})
        assert started["status"] == "RECORDING"
        handle = hung.app.recordings.process("lab0")
        assert handle is not None and int(handle.progress.get("frame", "0")) > 0
        stopped = await client.call("stop_recording", {"device": "lab0"})
        assert stopped["file_size"] > 0
