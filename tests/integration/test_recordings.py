"""RecordingManager with real FFmpeg (lavfi test pattern), verified with ffprobe."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from camera_service.media.errors import AlreadyRecording, InvalidTarget, MediaError, NotRecording
from camera_service.media.ffmpeg import ProcessSupervisor
from camera_service.media.process import ProcessHandle
from camera_service.media.recording_args import frames_written
from camera_service.media.recordings import EncoderSettings, RecordingManager
from camera_service.media.source import CaptureSource
from tests.support.media import FAST_STOP, LAVFI, ffprobe, no_leftover_children

__all__ = ["no_leftover_children"]  # fixture used through `supervisor`
pytestmark = pytest.mark.timeout(30)


class Events:
    """Collects on_event dicts; lets a test await the end of a recording."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.ended = asyncio.Event()

    def __call__(self, event: dict[str, Any]) -> None:
        self.items.append(event)
        if event["status"] != "STARTED":
            self.ended.set()

    @property
    def last(self) -> dict[str, Any]:
        return self.items[-1]


@pytest.fixture
async def supervisor(no_leftover_children: None) -> AsyncIterator[ProcessSupervisor]:
    sup = ProcessSupervisor(FAST_STOP)
    yield sup
    await sup.shutdown()


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
async def manager(
    supervisor: ProcessSupervisor, tmp_path: Path, events: Events
) -> AsyncIterator[RecordingManager]:
    mgr = RecordingManager(
        supervisor,
        tmp_path / "recordings",
        EncoderSettings(preset="ultrafast", bitrate="500k", profile="main"),
        events,
        frames_dir=tmp_path / "frames",
    )
    yield mgr
    await mgr.stop_all()


LAVFI_FPS = 15  # the rate of LAVFI


def source(camera_id: str = "cam0", **kwargs: Any) -> CaptureSource:
    return CaptureSource(camera_id, LAVFI, "lavfi", **kwargs)


def media_duration(path: Path) -> float:
    return float(ffprobe(path)["format"]["duration"])


async def recorded(manager: RecordingManager, camera_id: str, seconds: float) -> ProcessHandle:
    """Wait until FFmpeg reports ``seconds`` of video encoded into the recording; returns its
    handle. Counted in the recording's frames (``frame=``, its first output): ``out_time`` is
    the furthest of all outputs, and the latest-frame JPEG output (``fps=2:round=up``) runs
    up to 0.5 s ahead of the recording."""
    handle = manager.process(camera_id)
    assert handle is not None
    frames = seconds * LAVFI_FPS
    await asyncio.wait_for(handle.wait_for_progress(lambda p: frames_written(p) >= frames), 10)
    return handle


async def test_timed_recording_ends_by_itself(manager: RecordingManager, events: Events) -> None:
    began = time.monotonic()
    info = await manager.start(source(), "timed", "fmp4", duration=3)
    assert time.monotonic() - began < 2.5, "start_recording must answer quickly"
    assert info.filename == "timed.mp4" and info.duration == 3
    assert manager.active("cam0") == info and manager.active_files() == {info.path}
    assert events.items == [
        {"device": "cam0", "status": "STARTED", "filename": "timed.mp4", "duration": 3}
    ]
    await asyncio.wait_for(events.ended.wait(), 10)
    assert events.last["status"] == "STOPPED"
    assert events.last["reason"] == "duration_reached"
    assert events.last["duration"] >= 2.5
    assert manager.active("cam0") is None and manager.active_files() == set()
    assert abs(media_duration(info.path) - 3.0) <= 0.5
    with pytest.raises(NotRecording):
        await manager.stop("cam0")


async def test_fmp4_survives_sigkill(manager: RecordingManager, events: Events) -> None:
    info = await manager.start(source(), "killed", "fmp4")
    handle = await recorded(manager, "cam0", 1.5)
    assert handle.pid is not None
    os.killpg(handle.pid, signal.SIGKILL)  # ffmpeg dies mid-recording, no trailer written
    await asyncio.wait_for(events.ended.wait(), 10)
    assert events.last["status"] == "ERROR"
    assert "SIGKILL" in events.last["reason"]
    assert info.path.exists() and manager.active("cam0") is None
    assert media_duration(info.path) > 0
    assert ffprobe(info.path)["streams"][0]["codec_name"] == "h264"


@pytest.mark.parametrize("fmt", ["mp4", "mkv"])
async def test_stop_finalizes_file(manager: RecordingManager, events: Events, fmt: str) -> None:
    info = await manager.start(source(), None, fmt)
    assert info.filename.startswith("cam0_") and info.filename.endswith(f".{fmt}")
    handle = await recorded(manager, "cam0", 1.0)
    result = await asyncio.wait_for(manager.stop("cam0"), 10)
    assert handle.stop_step == "q" and handle.returncode == 0
    assert result.status == "STOPPED" and result.reason == "stopped"
    assert result.file_size == info.path.stat().st_size > 0
    assert result.end_time > result.start_time
    assert events.last == {
        "device": "cam0",
        "status": "STOPPED",
        "filename": info.filename,
        "duration": result.duration,
        "reason": "stopped",
    }
    probe = ffprobe(info.path)
    assert float(probe["format"]["duration"]) >= 0.8
    assert (probe["streams"][0]["width"], probe["streams"][0]["height"]) == (320, 240)


async def test_state_errors(manager: RecordingManager, tmp_path: Path) -> None:
    with pytest.raises(NotRecording):
        await manager.stop("cam0")
    info = await manager.start(source(), "first", "mkv")
    with pytest.raises(AlreadyRecording):
        await manager.start(source(), "second", "mkv")
    with pytest.raises(InvalidTarget):  # name taken by the running recording
        await manager.start(source("cam1"), "first.mkv", "mkv")
    with pytest.raises(InvalidTarget):
        await manager.start(source("cam1"), "../escape", "mkv")
    with pytest.raises(InvalidTarget):
        await manager.start(source("cam1"), "x", "avi")
    result = await manager.stop("cam0", "camera_disconnected", error=True)
    assert result.status == "ERROR" and result.reason == "camera_disconnected"
    assert info.path.stat().st_size > 0


async def test_start_failure_is_reported_fast(manager: RecordingManager, events: Events) -> None:
    broken = CaptureSource("cam9", "/nonexistent/video.mp4")
    with pytest.raises(MediaError) as caught:
        await manager.start(broken, "broken", "fmp4")
    assert "No such file" in caught.value.detail
    assert manager.active("cam9") is None and events.items == []
    assert not (manager.recordings_dir / "broken.mp4").exists()


async def test_stop_all(manager: RecordingManager, events: Events) -> None:
    await manager.start(source("a"), "a", "mkv")
    await manager.start(source("b"), "b", "fmp4")
    results = await asyncio.wait_for(manager.stop_all(), 15)
    assert sorted((r.device, r.reason) for r in results) == [("a", "shutdown"), ("b", "shutdown")]
    assert manager.active_all() == []
    assert [e["status"] for e in events.items].count("STOPPED") == 2


async def test_supervisor_shutdown_finalizes_recording(
    manager: RecordingManager, supervisor: ProcessSupervisor, events: Events
) -> None:
    info = await manager.start(source(), "down", "mkv")
    await recorded(manager, "cam0", 0.5)
    await asyncio.wait_for(supervisor.shutdown(), 10)
    await asyncio.wait_for(events.ended.wait(), 10)
    assert (events.last["status"], events.last["reason"]) == ("STOPPED", "shutdown")
    assert media_duration(info.path) > 0
