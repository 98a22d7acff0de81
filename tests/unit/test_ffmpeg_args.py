"""Argument builders, naming and outcome rules of recordings and snapshots (no processes)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from camera_service.media.errors import InvalidTarget
from camera_service.media.recording_args import frames_written
from camera_service.media.recordings import (
    EncoderSettings,
    build_recording_args,
    recording_outcome,
    resolve_output_path,
)
from camera_service.media.remux import remux_argv
from camera_service.media.snapshots import (
    build_capture_args,
    build_convert_args,
    is_complete_jpeg,
    publish,
)
from camera_service.media.source import CaptureSource

LAVFI = CaptureSource("cam0", "testsrc2=size=320x240:rate=15", "lavfi", fps=15)
H264 = CaptureSource("camera0", "/dev/video0", "v4l2", exclusive=True, is_h264=True)
ENC = EncoderSettings(preset="fast", bitrate="3M", profile="main", gop=30)
NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def rec_args(source: CaptureSource, fmt: str, duration: int | None = None) -> list[str]:
    return build_recording_args(
        "ffmpeg", source, Path("/r/out"), fmt, duration, ENC, Path("/f/cam_latest.jpg")
    )


def value(args: list[str], option: str, start: int = 0) -> str:
    return args[args.index(option, start) + 1]


@pytest.mark.parametrize("fmt", ["fmp4", "mp4"])
def test_fmp4_and_mp4_are_written_fragmented_and_flushed(fmt: str) -> None:
    """mp4 too (crash-safe); it becomes a regular MP4 by a remux when it ends."""
    args = rec_args(LAVFI, fmt)
    assert value(args, "-movflags") == "+frag_keyframe+empty_moov+default_base_moof"
    assert value(args, "-frag_duration") == "1000000"
    assert value(args, "-flush_packets") == "1"
    assert value(args, "-f", args.index("/r/out") - 2) == "mp4"


def test_mkv_container() -> None:
    args = rec_args(LAVFI, "mkv")
    out = args.index("/r/out")
    assert args[out - 1] == "matroska" and args[out - 2] == "-f"
    assert "+frag_keyframe+empty_moov+default_base_moof" not in args


def test_remux_copies_every_stream_into_a_regular_mp4() -> None:
    args = remux_argv("ffmpeg", Path("/r/a.mp4"), Path("/r/.a.mp4.remux-tmp.mp4"))
    assert value(args, "-i") == "/r/a.mp4" and value(args, "-c") == "copy"
    assert value(args, "-map") == "0" and value(args, "-movflags") == "+faststart"
    assert args[-3:] == ["-f", "mp4", "/r/.a.mp4.remux-tmp.mp4"]


def test_h264_encode_settings() -> None:
    args = rec_args(LAVFI, "fmp4")
    assert value(args, "-c:v") == "libx264"
    assert (value(args, "-preset"), value(args, "-b:v"), value(args, "-profile:v")) == (
        "fast",
        "3M",
        "main",
    )
    assert value(args, "-pix_fmt") == "yuv420p" and value(args, "-g") == "30"
    default_gop = build_recording_args(
        "ffmpeg", LAVFI, Path("/o"), "mkv", None, EncoderSettings(), Path("/f.jpg")
    )
    assert value(default_gop, "-g") == "15"  # one second at the source's 15 fps


def test_h264_source_is_copied() -> None:
    args = rec_args(H264, "mkv")
    assert value(args, "-c:v") == "copy" and "libx264" not in args
    assert value(args, "-input_format") == "h264"


def test_one_input_two_outputs_and_duration_on_both() -> None:
    args = rec_args(LAVFI, "fmp4", duration=7)
    assert args.count("-i") == 1
    assert args.count("-t") == 2 and value(args, "-t") == "7"
    assert args[-1] == "/f/cam_latest.jpg"
    assert value(args, "-update") == "1" and value(args, "-atomic_writing") == "1"
    assert value(args, "-progress") == "pipe:1"
    assert "-t" not in rec_args(LAVFI, "fmp4")


def test_snapshot_args() -> None:
    jpg = build_capture_args("ffmpeg", H264, Path("/s/.x.tmp"), "jpg")
    assert value(jpg, "-frames:v") == "1" and value(jpg, "-c:v") == "mjpeg"
    assert jpg[-1] == "/s/.x.tmp" and value(jpg, "-i") == "/dev/video0"
    png = build_convert_args("ffmpeg", Path("/s/src.jpg"), Path("/s/.x.tmp"), "png")
    assert value(png, "-i") == "/s/src.jpg" and value(png, "-c:v") == "png"
    with pytest.raises(InvalidTarget):
        build_capture_args("ffmpeg", H264, Path("/s/x"), "gif")


def test_output_names() -> None:
    d = Path("/data")
    assert resolve_output_path(d, None, ".mp4", "camera0", NOW) == d / (
        "camera0_2025-01-02_03-04-05.mp4"
    )
    assert resolve_output_path(d, "clip", ".mkv", "c", NOW).name == "clip.mkv"
    assert resolve_output_path(d, "clip.MKV", ".mkv", "c", NOW).name == "clip.MKV"
    assert resolve_output_path(d, "clip.mp4", ".mkv", "c", NOW).name == "clip.mp4.mkv"
    # The storage rules: listing, download and deletion accept exactly these names.
    for bad in ("../etc/passwd", "a/b", ".hidden", "a..b", "sp ace", "x%d", "x" * 126):
        with pytest.raises(InvalidTarget):
            resolve_output_path(d, bad, ".jpg", "c", NOW)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"stop_reason": "stopped", "returncode": 255}, ("STOPPED", "stopped")),
        (
            {"stop_reason": "camera_disconnected", "stop_error": True},
            ("ERROR", "camera_disconnected"),
        ),
        ({"duration": 3, "returncode": 0}, ("STOPPED", "duration_reached")),
        ({"duration": 3, "returncode": 0, "timed_out": True}, ("STOPPED", "duration_reached")),
        ({"returncode": 0}, ("STOPPED", "source_ended")),
        (
            {"returncode": 1, "stderr_tail": ["/dev/video0: No such device"]},
            ("ERROR", "/dev/video0: No such device"),
        ),
        ({"returncode": -9}, ("ERROR", "process killed by SIGKILL")),
        ({"returncode": 255, "stop_requested": True}, ("STOPPED", "shutdown")),
    ],
)
def test_recording_outcome(kwargs: dict[str, object], expected: tuple[str, str]) -> None:
    args: dict[str, object] = {
        "stop_reason": None,
        "stop_error": False,
        "duration": None,
        "returncode": 0,
        "timed_out": False,
        "stderr_tail": [],
        "stop_requested": False,
    }
    args.update(kwargs)
    assert recording_outcome(**args) == expected  # type: ignore[arg-type]


def test_jpeg_completeness() -> None:
    assert is_complete_jpeg(b"\xff\xd8 data \xff\xd9")
    assert not is_complete_jpeg(b"\xff\xd8 truncated")
    assert not is_complete_jpeg(b"")


def test_publish_is_no_clobber(tmp_path: Path) -> None:
    tmp, final = tmp_path / ".a.tmp", tmp_path / "a.jpg"
    tmp.write_bytes(b"one")
    publish(tmp, final)
    assert final.read_bytes() == b"one" and not tmp.exists()
    tmp.write_bytes(b"two")
    with pytest.raises(InvalidTarget):
        publish(tmp, final)
    assert final.read_bytes() == b"one" and not tmp.exists()


def test_generated_names_that_are_taken_get_a_counter() -> None:
    from datetime import UTC, datetime
    from pathlib import Path

    from camera_service.media.recordings import resolve_output_path

    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    taken = {"cam0_2026-01-02_03-04-05.jpg", "cam0_2026-01-02_03-04-05_1.jpg"}
    path = resolve_output_path(Path("/s"), None, ".jpg", "cam0", now, lambda p: p.name in taken)
    assert path.name == "cam0_2026-01-02_03-04-05_2.jpg"
    chosen = resolve_output_path(Path("/s"), "door", ".jpg", "cam0", now, lambda p: True)
    assert chosen.name == "door.jpg"  # a user's name is never renamed; the caller refuses it


@pytest.mark.parametrize(
    ("block", "frames"),
    [
        ({}, 0),
        ({"frame": "0", "out_time_us": "N/A"}, 0),
        ({"frame": "N/A", "out_time_us": "40000"}, 1),  # a stream copy without a frame count
        ({"frame": "7", "out_time_us": "466666"}, 7),
    ],
)
def test_frames_written_decides_when_a_recording_has_started(
    block: dict[str, str], frames: int
) -> None:
    assert frames_written(block) == frames
