"""Continuous-recording segments start, on the wall clock, when their first frame was captured.

The camera stamps the wall clock into its frames (tests/support/wallclock.py); the reported
start of each segment (the segment index: the run's t0 plus the muxer's listed start) is
compared with the time decoded from the segment's first frame, over several segments of
several runs (FFmpeg restarts), with the daemon's default encoder settings (libx264 veryfast,
whose B-frames delay the encoder's output by two frames).

Regression: t0 was pinned from FFmpeg's progress time, which was the latest-frame JPEG's
(whole-second ticks at the default frame_rate), and the segment muxer shifted every listed
start but the first by the B-frame delay: starts were 200-220 ms late.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
from pathlib import Path
from typing import Any

import pytest

from camera_service.media.continuous import CameraRecorder
from camera_service.storage import segments as seg
from camera_service.storage.modes import ModeSettings
from tests.support.daemon import RunningDaemon, running_daemon
from tests.support.waiting import wait_until
from tests.support.wallclock import first_frame_time, wallclock_graph

pytestmark = pytest.mark.timeout(120)

TOLERANCE_S = 0.15  # well above the noise (a frame is 67 ms; measured skews are 0-60 ms)
SEGMENTS_PER_RUN = 3
RUNS = 2
OVERRIDES: dict[str, Any] = {
    "cameras": {
        "sources": [
            {"id": "lab0", "input_format": "lavfi", "input": wallclock_graph(), "exclusive": True}
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
    for s in segments:
        if s.duration < 1.5:  # the killed run's last, partial segment also starts on a frame
            continue
        captured = await asyncio.to_thread(first_frame_time, s.path, s.start)
        skews.append(s.start - captured)
    assert len(skews) >= RUNS * SEGMENTS_PER_RUN
    worst = max(skews, key=abs)
    summary = f"n={len(skews)} median={statistics.median(skews):+.3f} s worst={worst:+.3f} s"
    assert abs(worst) < TOLERANCE_S, summary
