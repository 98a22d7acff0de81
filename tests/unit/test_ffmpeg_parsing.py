"""Pure helpers of the supervisor: stderr lines, error summaries, progress blocks."""

from __future__ import annotations

import signal

from camera_service.media.ffmpeg_output import (
    LineSplitter,
    ProgressParser,
    describe_returncode,
    summarize_stderr,
)


def test_line_splitter_handles_cr_lf_and_partial_lines() -> None:
    splitter = LineSplitter()
    assert splitter.feed("frame=1\rframe=2\r") == ["frame=1", "frame=2"]
    assert splitter.feed("Input #0, la") == []
    assert splitter.feed("vfi\n\nOutput #0\r\n") == ["Input #0, lavfi", "Output #0"]
    assert splitter.feed("tail without newline") == []
    assert splitter.flush() == ["tail without newline"]
    assert splitter.flush() == []


def test_line_splitter_bounds_line_length() -> None:
    splitter = LineSplitter(max_line=10)
    assert splitter.feed("x" * 25) == ["x" * 10]
    assert splitter.feed("ab\n") == ["ab"]


def test_summary_prefers_error_lines() -> None:
    lines = [
        "Input #0, v4l2",
        "[video4linux2] ioctl(VIDIOC_STREAMON): Device or resource busy",
        "Press [q] to stop",
    ]
    assert "resource busy" in summarize_stderr(lines, 1)
    assert summarize_stderr(["/x.mp4: No such file or directory"], 1).endswith("directory")


def test_summary_falls_back_to_signal_or_last_line() -> None:
    assert summarize_stderr(["deprecated pixel format"], -9) == "process killed by SIGKILL"
    assert summarize_stderr(["some last words"], 1) == "some last words"
    assert summarize_stderr([], 3) == "process exited with code 3"
    assert describe_returncode(-int(signal.SIGTERM)) == "process killed by SIGTERM"
    assert describe_returncode(None) == "process still running"


def test_progress_parser_returns_complete_blocks() -> None:
    parser = ProgressParser()
    assert parser.feed("frame=12\n") is None
    assert parser.feed("out_time_us=800000\n") is None
    assert parser.feed("noise without equals") is None
    block = parser.feed("progress=continue\n")
    assert block == {"frame": "12", "out_time_us": "800000", "progress": "continue"}
    assert parser.feed("progress=end") == {"progress": "end"}
