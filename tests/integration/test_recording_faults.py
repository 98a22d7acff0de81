"""Recording faults with real FFmpeg (issue 10, items 15 and 16): a hung FFmpeg fails the
start; plain mp4 recordings survive a SIGKILL of the daemon."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from camera_service.client import RpcCallError
from camera_service.media import remux
from camera_service.rpc.errors import redact_paths
from camera_service.storage.mediainfo import mp4_top_level_boxes
from tests.support.daemon import RunningDaemon, running_daemon
from tests.support.waiting import wait_until

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


async def test_plain_mp4_is_regular_after_stop_and_leaves_no_marker(tmp_path: Path) -> None:
    overrides: dict[str, Any] = {"cameras": {"sources": [LAB]}}
    async with running_daemon(tmp_path, overrides) as daemon, daemon.client("admin") as client:
        await asyncio.wait_for(daemon.app.recordings.recovered.wait(), 10)
        started = await client.call("start_recording", {"device": "lab0", "format": "mp4"})
        path = daemon.app.config.storage.recordings_dir / started["filename"]
        marker = path.with_name(f".{path.name}.remux")
        assert marker.exists()  # a remux is owed while it records (crash-safe)
        # Written fragmented: playable up to the last fragment if the daemon dies now.
        await wait_until(lambda: "moof" in mp4_top_level_boxes(path), what="first fragment")
        stopped = await client.call("stop_recording", {"device": "lab0"})
        assert not marker.exists()
        boxes = await asyncio.to_thread(mp4_top_level_boxes, path)
        assert "moov" in boxes and "moof" not in boxes, boxes
        assert stopped["file_size"] == path.stat().st_size
        info = await client.call("get_recording_info", {"filename": started["filename"]})
        assert info["format"] == "mp4" and info["duration"] > 0.5
        names = sorted(p.name for p in path.parent.iterdir())
        assert names == [path.name]  # no temporary, no marker


def test_frame_dirs_of_gone_daemons_are_removed(tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    dirs = {
        "dead": tmp_path / f"{remux.FRAMES_PREFIX}{gone.pid}-abc",
        "mine": tmp_path / f"{remux.FRAMES_PREFIX}{os.getpid()}-abc",
        "parent": tmp_path / f"{remux.FRAMES_PREFIX}{os.getppid()}-abc",
        "legacy_old": tmp_path / f"{remux.FRAMES_PREFIX}k2j3h4",
        "legacy_fresh": tmp_path / f"{remux.FRAMES_PREFIX}x9y8z7",
        "other": tmp_path / "unrelated-dir",
    }
    for directory in dirs.values():
        directory.mkdir()
        (directory / "lab0_latest.jpg").write_bytes(b"\xff\xd8")
    now = time.time()
    old = now - remux.LEGACY_FRAMES_AGE_S - 60
    os.utime(dirs["legacy_old"], (old, old))
    removed = remux.clean_frame_dirs(tmp_path, now=now)
    assert sorted(removed) == sorted([dirs["dead"], dirs["legacy_old"]])
    assert {name for name, d in dirs.items() if d.exists()} == {
        "mine",
        "parent",
        "legacy_fresh",
        "other",
    }


async def test_dependency_detail_shows_viewers_no_server_path(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as daemon, daemon.client("viewer") as client:
        recordings = daemon.app.config.storage.recordings_dir
        (recordings / "broken.mp4").write_bytes(b"\0\0\0\x10nothing-useful" * 64)
        with pytest.raises(RpcCallError) as info:
            await client.call("get_recording_info", {"filename": "broken.mp4"})
        error = info.value
        assert error.code == -32050 and error.data["dependency"] == "ffprobe"
        assert "broken.mp4" in error.data["detail"]
        assert str(tmp_path) not in error.data["detail"] and "/" not in error.data["detail"]


@pytest.mark.parametrize(
    ("text", "public"),
    [
        ("/var/lib/cs/recordings/x.mp4: Invalid data", "x.mp4: Invalid data"),
        ("No such file or directory: '/usr/bin/ffmpegx'", "No such file or directory: 'ffmpegx'"),
        ("rtsp://127.0.0.1:8554/cam0 timed out", "rtsp://127.0.0.1:8554/cam0 timed out"),
        ("scale 1/2 of /dev/video0.", "scale 1/2 of video0."),
    ],
)
def test_redact_paths(text: str, public: str) -> None:
    assert redact_paths(text) == public
