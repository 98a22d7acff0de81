"""An H.264 source is recorded by copy (real FFmpeg, checked with ffprobe), and a snapshot
during that recording still comes from the recording's own (key) frames."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from tests.support.daemon import running_daemon
from tests.support.media import ffprobe


def _h264_file(path: Path) -> None:
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
            "testsrc2=size=320x240:rate=15",
            "-t",
            "3",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "15",
            "-pix_fmt",
            "yuv420p",
            str(path),
        ],
        check=True,
        timeout=60,
    )


async def test_h264_source_is_copied_not_reencoded(tmp_path: Path) -> None:
    source = tmp_path / "camera.mp4"
    _h264_file(source)
    overrides = {
        "cameras": {
            "sources": [
                {"id": "h264cam", "input": str(source), "exclusive": True, "pixel_format": "H264"},
                {"id": "plain", "input": str(source), "exclusive": True},
            ]
        },
        "ffmpeg": {"video_encoder": "libx264"},
    }
    async with running_daemon(tmp_path, overrides) as daemon, daemon.client("operator") as op:
        started = await op.call("start_recording", {"device": "h264cam", "duration": 2})
        handle = daemon.app.recordings.process("h264cam")
        assert handle is not None
        argv = handle.argv
        first_output = argv[: argv.index(str(tmp_path / "recordings" / started["filename"]))]
        assert first_output[first_output.index("-c:v") + 1] == "copy"
        assert "libx264" not in argv
        assert argv[argv.index("-skip_frame") + 1] == "nokey"  # the latest frame: key frames
        shot = await op.call("take_snapshot", {"device": "h264cam"})
        assert shot["file_size"] > 0
        note = None
        while note is None or note["params"].get("status") != "STOPPED":
            note = await op.next_notification(15)
        plain = await op.call("start_recording", {"device": "plain", "duration": 1})
        plain_handle = daemon.app.recordings.process("plain")
        assert plain_handle is not None and "libx264" in plain_handle.argv
        await asyncio.wait_for(plain_handle.wait(), 30)
    copied = ffprobe(tmp_path / "recordings" / started["filename"])
    video = next(s for s in copied["streams"] if s["codec_type"] == "video")
    assert video["codec_name"] == "h264" and (video["width"], video["height"]) == (320, 240)
    assert float(copied["format"]["duration"]) >= 1.5
    encoded = ffprobe(tmp_path / "recordings" / plain["filename"])
    assert next(s for s in encoded["streams"] if s["codec_type"] == "video")["codec_name"] == "h264"
