"""CaptureSource → FFmpeg input options."""

from __future__ import annotations

import pytest

from camera_service.media.source import CaptureSource


def test_lavfi_runs_in_real_time() -> None:
    src = CaptureSource("t", "testsrc2=size=640x480:rate=15", "lavfi")
    assert src.kind == "lavfi"
    assert src.input_args() == ["-re", "-f", "lavfi", "-i", "testsrc2=size=640x480:rate=15"]


def test_v4l2_with_capture_settings() -> None:
    src = CaptureSource("camera0", "/dev/video0", None, True, True, "1280x720", 30)
    args = src.input_args()
    assert src.kind == "v4l2"
    assert args[:2] == ["-f", "v4l2"] and args[-2:] == ["-i", "/dev/video0"]
    for option, value in [
        ("-input_format", "h264"),
        ("-video_size", "1280x720"),
        ("-framerate", "30"),
    ]:
        assert args[args.index(option) + 1] == value


def test_v4l2_minimal() -> None:
    args = CaptureSource("camera1", "/dev/video1", "v4l2").input_args()
    assert "-video_size" not in args and "-input_format" not in args
    assert args[-2:] == ["-i", "/dev/video1"]


def test_rtsp_uses_tcp() -> None:
    args = CaptureSource("ext", "rtsp://host:8554/cam").input_args()
    assert args == ["-rtsp_transport", "tcp", "-f", "rtsp", "-i", "rtsp://host:8554/cam"]


def test_file_is_looped_in_real_time() -> None:
    args = CaptureSource("f", "/srv/sample.mp4").input_args()
    assert args == ["-re", "-stream_loop", "-1", "-i", "/srv/sample.mp4"]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (CaptureSource("h", "https://host/live.m3u8"), ["-i", "https://host/live.m3u8"]),
        (CaptureSource("x", ":0.0", "x11grab"), ["-f", "x11grab", "-i", ":0.0"]),
    ],
)
def test_other_inputs(source: CaptureSource, expected: list[str]) -> None:
    assert source.input_args() == expected
