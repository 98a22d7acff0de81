"""SnapshotService with real FFmpeg: bare captures and single-reader snapshots during recording."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from camera_service.media.errors import DeviceBusy, InvalidTarget, MediaError
from camera_service.media.ffmpeg import ProcessSupervisor
from camera_service.media.recordings import EncoderSettings, RecordingManager
from camera_service.media.snapshots import SnapshotService
from camera_service.media.source import CaptureSource
from tests.integration.test_ffmpeg_supervisor import python_ignoring
from tests.support.media import FAST_STOP, LAVFI, ffprobe, no_leftover_children

__all__ = ["no_leftover_children"]  # fixture used through `supervisor`
pytestmark = pytest.mark.timeout(30)

CODECS = {"jpg": "mjpeg", "png": "png"}
EXCLUSIVE = CaptureSource("cam0", LAVFI, "lavfi", exclusive=True)


@pytest.fixture
async def supervisor(no_leftover_children: None) -> AsyncIterator[ProcessSupervisor]:
    sup = ProcessSupervisor(FAST_STOP)
    yield sup
    await sup.shutdown()


@pytest.fixture
async def recordings(
    supervisor: ProcessSupervisor, tmp_path: Path
) -> AsyncIterator[RecordingManager]:
    mgr = RecordingManager(
        supervisor,
        tmp_path / "recordings",
        EncoderSettings(preset="ultrafast", bitrate="500k"),
        frames_dir=tmp_path / "frames",
    )
    yield mgr
    await mgr.stop_all()


@pytest.fixture
def snapshots(
    supervisor: ProcessSupervisor, recordings: RecordingManager, tmp_path: Path
) -> SnapshotService:
    return SnapshotService(supervisor, recordings, tmp_path / "snapshots")


def assert_image(path: Path, fmt: str) -> None:
    stream: dict[str, Any] = ffprobe(path)["streams"][0]
    assert stream["codec_name"] == CODECS[fmt]
    assert (stream["width"], stream["height"]) == (320, 240)


def no_temporaries(directory: Path) -> bool:
    return not any(p.name.startswith(".") for p in directory.iterdir())


@pytest.mark.parametrize("fmt", ["jpg", "png"])
async def test_bare_snapshot(
    snapshots: SnapshotService, supervisor: ProcessSupervisor, fmt: str
) -> None:
    result = await snapshots.take(EXCLUSIVE, "shot", fmt)
    assert result.filename == f"shot.{fmt}" and result.origin == "capture"
    assert result.size == result.path.stat().st_size > 0
    assert_image(result.path, fmt)
    assert [h.role for h in supervisor.history("cam0")] == ["snapshot"]
    assert no_temporaries(snapshots.snapshots_dir)


async def test_generated_name_and_no_clobber(snapshots: SnapshotService) -> None:
    first = await snapshots.take(EXCLUSIVE)
    assert first.filename.startswith("cam0_") and first.filename.endswith(".jpg")
    before = first.path.read_bytes()
    with pytest.raises(InvalidTarget):
        await snapshots.take(EXCLUSIVE, first.filename)
    assert first.path.read_bytes() == before
    with pytest.raises(InvalidTarget):
        await snapshots.take(EXCLUSIVE, "x", "gif")


async def test_snapshot_during_recording_uses_the_single_reader(
    snapshots: SnapshotService, recordings: RecordingManager, supervisor: ProcessSupervisor
) -> None:
    await recordings.start(EXCLUSIVE, "rec", "fmp4")
    # Right after start: the first frame may not exist yet; the snapshot waits for it.
    shots = await asyncio.gather(
        snapshots.take(EXCLUSIVE, "during", "jpg"),
        snapshots.take(EXCLUSIVE, "during", "png"),
    )
    for shot in shots:
        assert shot.origin == "recording"
        assert_image(shot.path, shot.format)
    readers = [h for h in supervisor.history("cam0") if h.reader]
    assert [h.role for h in readers] == ["recording"]
    assert supervisor.peak_readers("cam0") == 1
    assert {h.role for h in supervisor.history("cam0")} == {"recording", "convert"}
    await recordings.stop("cam0")
    assert no_temporaries(snapshots.snapshots_dir)
    assert not any((snapshots.snapshots_dir.parent / "frames").iterdir())


async def test_exclusive_camera_held_by_another_reader(
    supervisor: ProcessSupervisor, recordings: RecordingManager, tmp_path: Path
) -> None:
    await supervisor.start(
        python_ignoring(), camera_id="cam0", role="stream", reader=True, exclusive=True
    )
    plain = SnapshotService(supervisor, recordings, tmp_path / "snapshots")
    with pytest.raises(DeviceBusy):
        await plain.take(EXCLUSIVE, "busy")

    def via_stream(source: CaptureSource) -> CaptureSource:
        # Stand-in for the MediaMTX RTSP URL of the camera's stream.
        return replace(source, exclusive=False)

    fallback = SnapshotService(
        supervisor, recordings, tmp_path / "snapshots", fallback_source=via_stream
    )
    result = await fallback.take(EXCLUSIVE, "via-stream")
    assert result.origin == "capture"
    assert_image(result.path, "jpg")
    assert supervisor.peak_readers("cam0") == 1  # the fallback read did not open the device


async def test_capture_failure(snapshots: SnapshotService) -> None:
    broken = CaptureSource("cam9", "/nonexistent/video.mp4")
    with pytest.raises(MediaError) as caught:
        await snapshots.take(broken, "broken")
    assert "No such file" in caught.value.detail
    assert list(snapshots.snapshots_dir.iterdir()) == []
