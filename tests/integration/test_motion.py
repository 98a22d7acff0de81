"""Motion detection with real FFmpeg on synthetic scenes whose motion is known: a static grey
picture that shows a moving test pattern between t=4 s and t=8 s (media time), and a static
scene with strong sensor-like noise that must give no event at all. In motion mode each event
gets a clip (pre-roll + event + post-roll) that is a recording linked from the event."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from camera_service.client import CameraClient
from camera_service.storage.modes import ModeSettings
from tests.support.daemon import running_daemon
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(90)

MOTION_FROM, MOTION_TO = 4.0, 8.0
TOLERANCE_S = 1.0
KNOWN_MOTION = (
    "color=c=gray:s=320x240:r=15[bg];testsrc2=s=320x240:r=15[fg];"
    f"[bg][fg]overlay=enable='between(t,{MOTION_FROM:g},{MOTION_TO:g})'"
)
NOISY_STATIC = "color=c=gray:s=320x240:r=15,noise=alls=40:allf=t+u"


def overrides(source: str, **motion: Any) -> dict[str, Any]:
    return {
        "cameras": {"sources": [{"id": "yard", "input_format": "lavfi", "input": source}]},
        "ffmpeg": {"preset": "ultrafast", "bitrate": "400k"},
        "motion": {"enabled": True, "min_duration": 0.6, "end_after": 1.5, **motion},
    }


async def motion_notes(client: CameraClient, count: int, timeout: float) -> list[dict[str, Any]]:
    notes: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(notes) < count:
        note = await client.next_notification(timeout=max(deadline - loop.time(), 0.1))
        if note["method"] == "motion_event":
            notes.append(note["params"])
    return notes


def _epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def test_known_motion_interval_is_detected(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, overrides(KNOWN_MOTION)) as daemon:
        async with daemon.client("viewer") as client:
            await client.call("subscribe_events", {"topics": ["motion.*"]})
            await daemon.app.nvr.set_mode("yard", ModeSettings("continuous", 10, 1.0, 1.0))
            recorder = daemon.app.nvr.recorder("yard")
            assert recorder is not None
            start, end = await motion_notes(client, 2, 30)
            t0 = recorder.t0
            listed = await client.call("list_events", {"device": "yard"})
            frames = recorder.motion_frames
        await daemon.app.nvr.set_mode("yard", ModeSettings("off", 10, 1.0, 1.0))
    assert t0 is not None
    assert start["topic"] == "motion.start" and end["topic"] == "motion.end"
    assert start["event_id"] == end["event_id"]
    detected_from = _epoch(end["start_time"]) - t0
    detected_to = _epoch(end["end_time"]) - t0
    assert detected_from == pytest.approx(MOTION_FROM, abs=TOLERANCE_S)
    assert detected_to == pytest.approx(MOTION_TO, abs=TOLERANCE_S)
    assert 0 < end["score"] <= 1
    [event] = listed["events"]
    assert event["id"] == end["event_id"] and event["type"] == "motion"
    assert event["clip"] is None  # continuous mode: the footage is in the segments
    assert frames > 0


async def test_static_noisy_scene_gives_no_event(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, overrides(NOISY_STATIC)) as daemon:
        await daemon.app.nvr.set_mode("yard", ModeSettings("continuous", 10, 1.0, 1.0))
        recorder = daemon.app.nvr.recorder("yard")
        assert recorder is not None
        # 10 s of analysed frames (5 per second) at the default sensitivity.
        await wait_until(lambda: recorder.motion_frames >= 50, 30, "analysed frames")
        events = daemon.app.nvr.events.all()
        await daemon.app.nvr.set_mode("yard", ModeSettings("off", 10, 1.0, 1.0))
    assert events == []


async def test_motion_mode_keeps_a_clip_around_the_event(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, overrides(KNOWN_MOTION)) as daemon:
        nvr = daemon.app.nvr
        async with daemon.client("viewer") as client:
            await client.call("subscribe_events", {"topics": ["motion.*"]})
            await nvr.set_mode("yard", ModeSettings("motion", 10, 2.0, 1.0))
            notes = await motion_notes(client, 3, 45)  # start, end, end with the clip
            listed = await client.call("list_events", {"device": "yard"})
            recordings = await client.call("list_recordings", {"device": "yard"})
        recorder = nvr.recorder("yard")
        assert recorder is not None and recorder.t0 is not None
        t0 = recorder.t0
        await nvr.set_mode("yard", ModeSettings("off", 10, 2.0, 1.0))
        clip_dir = daemon.app.files.directory("recordings")
    clip_note = notes[2]
    [event] = listed["events"]
    assert event["clip"] == clip_note["clip"] and event["clip_url"]
    assert event["clip"] in {f["filename"] for f in recordings["files"]}
    duration = _probe_duration(clip_dir / event["clip"])
    # pre-roll 2 s + about 4 s of motion + post-roll 1 s (the start snaps to a keyframe).
    expected = (_epoch(event["end_time"]) + 1.0) - (_epoch(event["start_time"]) - 2.0)
    assert duration == pytest.approx(expected, abs=1.2)
    assert _epoch(event["start_time"]) - t0 == pytest.approx(MOTION_FROM, abs=TOLERANCE_S)


def _probe_duration(path: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return float(json.loads(out.stdout)["format"]["duration"])


async def test_motion_mode_buffer_keeps_only_the_pre_roll(tmp_path: Path) -> None:
    static = overrides("color=c=gray:s=320x240:r=15")
    async with running_daemon(tmp_path, static) as daemon:
        nvr = daemon.app.nvr
        await nvr.set_mode("yard", ModeSettings("motion", 2, 1.0, 1.0))
        await wait_until(lambda: nvr.deleted_segments >= 3, 40, "buffer segments trimmed")
        kept = await nvr.segments("yard")
        recorder = nvr.recorder("yard")
        assert recorder is not None and recorder.active and recorder.restarts == 0
        await nvr.set_mode("yard", ModeSettings("off", 2, 1.0, 1.0))
    # What is left: the segment being written and what a 1 s pre-roll may still need.
    assert 1 <= len(kept) <= 3
    assert nvr.events.all() == []


async def test_continuous_segments_are_not_trimmed_as_a_buffer(tmp_path: Path) -> None:
    static = overrides("color=c=gray:s=320x240:r=15")
    async with running_daemon(tmp_path, static) as daemon:
        nvr = daemon.app.nvr
        await nvr.set_mode("yard", ModeSettings("continuous", 2, 1.0, 1.0))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 40
        while len([s for s in await nvr.segments("yard") if s.complete]) < 5:
            assert loop.time() < deadline
            await asyncio.sleep(0.2)
        await nvr.housekeep_once()
        assert nvr.deleted_segments == 0
        await nvr.set_mode("yard", ModeSettings("off", 2, 1.0, 1.0))


LEFT_HALF_MOTION = (
    "color=c=gray:s=320x240:r=15[bg];testsrc2=s=160x240:r=15[fg];"
    "[bg][fg]overlay=x=0:y=0:enable='gte(t,1)'"
)


async def test_motion_in_a_masked_area_gives_no_event(tmp_path: Path) -> None:
    """Motion only in the left half: masked there, nothing; a zone there, an event."""
    masked = overrides(LEFT_HALF_MOTION, mask=[{"x": 0, "y": 0, "width": 0.5, "height": 1}])
    masked["continuous"] = {
        "cameras": {
            "zoned": {
                "motion": {"zones": [{"x": 0, "y": 0, "width": 0.5, "height": 1}], "mask": []}
            }
        }
    }
    masked["cameras"]["sources"].append(
        {"id": "zoned", "input_format": "lavfi", "input": LEFT_HALF_MOTION}
    )
    async with running_daemon(tmp_path, masked) as daemon:
        nvr = daemon.app.nvr
        await nvr.set_mode("yard", ModeSettings("continuous", 10, 1.0, 1.0))
        await nvr.set_mode("zoned", ModeSettings("continuous", 10, 1.0, 1.0))
        yard, zoned = nvr.recorder("yard"), nvr.recorder("zoned")
        assert yard is not None and zoned is not None
        await wait_until(lambda: any(e.device == "zoned" for e in nvr.events.all()), 30, "zone")
        await wait_until(lambda: yard.motion_frames >= 40, 30, "analysed frames")
        devices = {e.device for e in nvr.events.all()}
        await nvr.set_mode("yard", ModeSettings("off", 10, 1.0, 1.0))
        await nvr.set_mode("zoned", ModeSettings("off", 10, 1.0, 1.0))
    assert devices == {"zoned"}
