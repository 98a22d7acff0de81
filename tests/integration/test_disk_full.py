"""A real small disk (tmpfs) filling up under continuous recording.

``storage.when_full: delete_oldest``: at the blocking threshold the oldest segments go and the
same FFmpeg run keeps recording; a manual recording on the same disk is kept. ``stop``: the
recording stops and nothing is deleted. Needs root (``mount -t tmpfs``)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from camera_service.storage.modes import ModeSettings
from tests.support.daemon import running_daemon
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(120)

DISK_BYTES = 16 << 20
BLOCK_PERCENT = 90.0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a tmpfs")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        timeout=10,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=10)


def config(disk: Path, tmp_path: Path, when_full: str) -> dict[str, Any]:
    return {
        "cameras": {
            "sources": [
                {
                    "id": "lab0",
                    "input_format": "lavfi",
                    # noise keeps the encoder at its bitrate: the disk fills in seconds
                    "input": "testsrc2=s=640x480:r=15,noise=alls=30:allf=t",
                }
            ]
        },
        "ffmpeg": {"preset": "ultrafast", "bitrate": "2M"},
        "storage": {
            "recordings_dir": str(disk / "recordings"),
            "snapshots_dir": str(disk / "snapshots"),
            "state_dir": str(tmp_path / "state"),
            "warn_percent": 80.0,
            "block_percent": BLOCK_PERCENT,
            "when_full": when_full,
        },
    }


def fill(disk: Path, manual: Path) -> None:
    """A kept manual recording (1 MB) and filler up to ~80 % of the disk."""
    manual.parent.mkdir(parents=True, exist_ok=True)
    manual.write_bytes(os.urandom(1 << 20))
    usage = shutil.disk_usage(disk)
    filler = int(usage.total * 0.80) - usage.used
    with (disk / "filler.bin").open("wb") as handle:
        handle.write(b"\0" * filler)


def used_percent(disk: Path) -> float:
    usage = shutil.disk_usage(disk)
    return usage.used / usage.total * 100


async def test_full_disk_deletes_oldest_segments_and_recording_goes_on(
    small_disk: Path, tmp_path: Path
) -> None:
    manual = small_disk / "recordings" / "lab0_2026-01-01_00-00-00.mp4"
    fill(small_disk, manual)
    async with running_daemon(tmp_path, config(small_disk, tmp_path, "delete_oldest")) as daemon:
        nvr = daemon.app.nvr
        await nvr.set_mode("lab0", ModeSettings("continuous", 2, 1.0, 1.0))
        recorder = nvr.recorder("lab0")
        assert recorder is not None
        await wait_until(lambda: recorder.active, 20, "recording")
        run = recorder.run
        await wait_until(lambda: nvr.deleted_segments >= 3, 90, "oldest segments deleted")
        after_rollover = {s.filename for s in await nvr.segments("lab0")}
        # Recording goes on after the roll-over: new segments from the same FFmpeg run.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while not {s.filename for s in await nvr.segments("lab0")} - after_rollover:
            assert loop.time() < deadline, "no new segment after the roll-over"
            await asyncio.sleep(0.2)
        assert recorder.run == run and recorder.active and recorder.restarts == 0
        assert used_percent(small_disk) < 100
        await nvr.set_mode("lab0", ModeSettings("off", 2, 1.0, 1.0))
    assert manual.exists()  # manual recordings are not rolled over
    assert used_percent(small_disk) < 100


async def test_when_full_stop_stops_and_deletes_nothing(small_disk: Path, tmp_path: Path) -> None:
    manual = small_disk / "recordings" / "lab0_2026-01-01_00-00-00.mp4"
    fill(small_disk, manual)
    async with running_daemon(tmp_path, config(small_disk, tmp_path, "stop")) as daemon:
        nvr = daemon.app.nvr
        await nvr.set_mode("lab0", ModeSettings("continuous", 2, 1.0, 1.0))
        await wait_until(lambda: nvr.paused_for_storage, 90, "paused at the threshold")
        assert nvr.recorder("lab0") is None
        # The stopped FFmpeg closes (and lists) its last segment.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        segments = await nvr.segments("lab0")
        while not all(s.complete for s in segments):
            assert loop.time() < deadline, segments
            await asyncio.sleep(0.1)
            segments = await nvr.segments("lab0")
        assert segments and nvr.deleted_segments == 0
        assert nvr.settings("lab0").mode == "continuous"  # the stored mode is kept
    assert manual.exists()
