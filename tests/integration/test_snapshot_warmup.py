"""Warm-up frames: a snapshot that opens a V4L2 camera skips its first frames."""

from __future__ import annotations

import subprocess
from pathlib import Path

from camera_service.media.capture import warmup_filter
from camera_service.media.snapshots import build_capture_args
from camera_service.media.source import CaptureSource

V4L2 = CaptureSource(
    "camera0",
    "/dev/video0",
    "v4l2",
    exclusive=True,
    pixel_format="MJPG",
    resolution="1280x720",
    fps=30,
)
LAVFI = CaptureSource("lab0", "testsrc2=size=160x120:rate=10", "lavfi")


def test_only_freshly_opened_v4l2_cameras_skip_frames(tmp_path: Path) -> None:
    argv = build_capture_args("ffmpeg", V4L2, tmp_path / "s.jpg", "jpg", warmup_frames=5)
    assert argv[argv.index("-vf") + 1] == "select=gte(n\\,5)"
    assert argv.index("-vf") < argv.index("-frames:v")
    # info: FFmpeg's "Input #0, video4linux2" line tells when the camera streams
    assert argv[argv.index("-loglevel") + 1] == "info"
    lavfi = build_capture_args("ffmpeg", LAVFI, tmp_path / "s.jpg", "jpg", 5)
    assert lavfi[lavfi.index("-loglevel") + 1] == "error"
    assert "-vf" not in build_capture_args("ffmpeg", V4L2, tmp_path / "s.jpg", "jpg", 0)
    assert "-vf" not in build_capture_args("ffmpeg", LAVFI, tmp_path / "s.jpg", "jpg", 5)


def _frame(tmp_path: Path, name: str, vf: list[str]) -> bytes:
    out = tmp_path / name
    subprocess.run(
        [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            LAVFI.input,
            *vf,
            "-frames:v",
            "1",
            "-c:v",
            "png",
            "-f",
            "image2",
            str(out),
        ],
        check=True,
        timeout=30,
    )
    return out.read_bytes()


def test_the_filter_really_delivers_the_frame_after_the_warm_up(tmp_path: Path) -> None:
    skipped = _frame(tmp_path, "skipped.png", warmup_filter(5))
    sixth = _frame(tmp_path, "sixth.png", ["-vf", "select=eq(n\\,5)"])
    first = _frame(tmp_path, "first.png", [])
    assert skipped == sixth  # testsrc2 draws a frame counter: the pictures differ per frame
    assert skipped != first
