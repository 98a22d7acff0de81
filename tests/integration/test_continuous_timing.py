"""Continuous-recording segments start, on the wall clock, when their first frame was captured.

The camera stamps the wall clock into its frames (tests/support/wallclock.py); the reported
start of each segment (the segment index: the run's t0 plus the muxer's listed start) is
compared with the time decoded from the segment's first frame, over several segments of
several runs (FFmpeg restarts), with the daemon's default encoder settings (libx264 veryfast,
whose B-frames delay the encoder's output by two frames).

Regression: t0 was pinned from FFmpeg's progress time, which was the latest-frame JPEG's
(whole-second ticks at the default frame_rate), and the segment muxer shifted every listed
start but the first by the B-frame delay: starts were 200-220 ms late.

The simulated camera is lavfi paced by ``-re``: on a box so starved of CPU that its FFmpeg
falls behind real time (two of these tests at once on two cores did it), the frames are made
late and the measurement says nothing about the daemon. The suite runs serially.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
from pathlib import Path
from typing import Any

import pytest

from camera_service.media.continuous import CameraRecorder
from camera_service.storage import segments as seg
from camera_service.storage.modes import ModeSettings
from tests.support.daemon import RunningDaemon, running_daemon
from tests.support.waiting import wait_until
from tests.support.wallclock import HEIGHT, WIDTH, decode_stamp, first_frame_time, wallclock_graph

pytestmark = pytest.mark.timeout(120)

CLIP_START_TOLERANCE_S = 0.1
TOLERANCE_S = 0.15  # well above the noise (a frame is 67 ms; measured skews are 0-60 ms)
SEGMENTS_PER_RUN = 3
RUNS = 2
FPS = 15
OVERRIDES: dict[str, Any] = {
    "cameras": {
        "sources": [
            {
                "id": "lab0",
                "input_format": "lavfi",
                "input": wallclock_graph(FPS),
                "exclusive": True,
            }
        ]
    },
    "continuous": {"restart_backoff_base": 0.2, "restart_backoff_max": 1.0},
}


async def _complete_in_run(daemon: RunningDaemon, run: str, count: int) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30 + count * 5
    while True:
        done = [s for s in await daemon.app.nvr.segments("lab0") if s.complete and s.run == run]
        if len(done) >= count:
            return
        assert loop.time() < deadline, f"run {run}: fewer than {count} complete segments"
        await asyncio.sleep(0.2)


async def _next_run(recorder: CameraRecorder, previous: str | None) -> str:
    await wait_until(
        lambda: recorder.run not in (None, previous) and recorder.active, 20, "a new run"
    )
    assert recorder.run is not None
    return recorder.run


async def _record(tmp_path: Path) -> list[seg.Segment]:
    async with running_daemon(tmp_path, OVERRIDES) as daemon:
        nvr = daemon.app.nvr
        await nvr.set_mode("lab0", ModeSettings("continuous", 2, 1.0, 1.0))
        recorder = nvr.recorder("lab0")
        assert recorder is not None
        previous: str | None = None
        for index in range(RUNS):
            run = await _next_run(recorder, previous)
            await _complete_in_run(daemon, run, SEGMENTS_PER_RUN)
            if index < RUNS - 1:
                handle = recorder.handle
                assert handle is not None and handle.pid is not None
                os.kill(handle.pid, signal.SIGKILL)  # a crash: the next run pins its own t0
            previous = run
        found = [s for s in await nvr.segments("lab0") if s.complete]
        await nvr.set_mode("lab0", ModeSettings("off", 2, 1.0, 1.0))
    return found


async def test_segment_starts_are_the_wall_time_of_their_first_frame(tmp_path: Path) -> None:
    segments = await _record(tmp_path)
    runs = {s.run for s in segments}
    assert len(runs) == RUNS
    skews: list[float] = []
    seen: list[str] = []
    for s in segments:
        if s.duration < 1.5:  # the killed run's last, partial segment also starts on a frame
            continue
        captured = await asyncio.to_thread(first_frame_time, s.path, s.start)
        skews.append(s.start - captured)
        seen.append(f"{s.run}/{s.start:.3f}:{s.start - captured:+.3f}")
    assert len(skews) >= RUNS * SEGMENTS_PER_RUN
    worst = max(skews, key=abs)
    summary = f"n={len(skews)} median={statistics.median(skews):+.3f} s worst={worst:+.3f} s"
    summary += " (" + " ".join(seen) + ")"
    assert abs(worst) < TOLERANCE_S, summary


def _last_frame_time(path: Path, near: float) -> float:
    """Wall time shown by the last frame of a file (decoded from its final second)."""
    out = subprocess.run(
        [
            *("ffmpeg", "-v", "error", "-sseof", "-1", "-i", str(path)),
            *("-f", "rawvideo", "-pix_fmt", "gray", "-"),
        ],
        capture_output=True,
        timeout=30,
        check=True,
    )
    frame = WIDTH * HEIGHT
    assert len(out.stdout) >= frame
    return decode_stamp(out.stdout[-frame:], near)


async def test_a_clip_starts_and_ends_where_export_clip_says(tmp_path: Path) -> None:
    """Clip times against the frames in the clip, each measured from its segment's own first
    frame (so the run's t0, tested above, drops out).

    Regression: the keyframe the clip starts on was taken in the file's timestamps, which the
    MP4 muxer shifts by the B-frame delay: the reported start was 133 ms after the clip's
    first frame."""
    async with running_daemon(tmp_path, OVERRIDES) as daemon:
        nvr = daemon.app.nvr
        await nvr.set_mode("lab0", ModeSettings("continuous", 2, 1.0, 1.0))
        recorder = nvr.recorder("lab0")
        assert recorder is not None
        run = await _next_run(recorder, None)
        await _complete_in_run(daemon, run, 3)
        segments = [s for s in await nvr.segments("lab0") if s.complete]
        head, tail = segments[0], segments[2]
        start, end = head.start + 1.5, tail.start + 0.5  # mid-GOP, mid-segment
        result = await nvr.export_clip("lab0", start, end)
        await nvr.set_mode("lab0", ModeSettings("off", 2, 1.0, 1.0))
    head_first = await asyncio.to_thread(first_frame_time, head.path, head.start)
    tail_first = await asyncio.to_thread(first_frame_time, tail.path, tail.start)
    clip_first = await asyncio.to_thread(first_frame_time, result.path, result.start)
    clip_last = await asyncio.to_thread(_last_frame_time, result.path, result.end)
    frame = 1 / FPS
    assert result.start <= start < result.start + 1.0 + 1e-3  # cut on the keyframe before
    reported, shown = result.start - head.start, clip_first - head_first
    # Within 100 ms: a frame plus the generator's jitter under load (the stamps are taken
    # when lavfi makes the frame, which a busy box delays); the regression was 125-133 ms.
    assert abs(reported - shown) < CLIP_START_TOLERANCE_S, (reported, shown)
    # The last frame is the one before `end` (FFmpeg's concat outpoint, within a frame).
    wanted, shown = end - tail.start - frame, clip_last - tail_first
    assert abs(wanted - shown) < 2.5 * frame, (wanted, shown)
