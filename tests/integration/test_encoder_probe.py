"""The H.264 encoder probe against this machine's FFmpeg (no encoder hardware here)."""

from __future__ import annotations

import os

import pytest

from camera_service.media.encoders import (
    HARDWARE_ENCODERS,
    listed_encoders,
    probe_encoders,
    run_subprocess,
)


@pytest.mark.skipif(os.path.exists("/dev/dri/renderD128"), reason="a GPU may really encode here")
async def test_auto_falls_back_to_libx264_and_says_why() -> None:
    report = await probe_encoders("ffmpeg", "auto")
    assert report.selected == "libx264"
    assert report.available == ["libx264"]
    assert report.reason == "no hardware H.264 encoder works here: libx264"
    # each hardware encoder is either not built in or failed its real test encode
    assert set(report.unavailable) == set(HARDWARE_ENCODERS)
    ok, listing, _ = await run_subprocess(["ffmpeg", "-hide_banner", "-encoders"], 10)
    assert ok
    built_in = listed_encoders(listing) & set(HARDWARE_ENCODERS)
    assert built_in, "Debian's FFmpeg is built with the hardware wrappers"
    for name in built_in:
        assert report.unavailable[name] != "not built into this FFmpeg"


async def test_explicit_encoder_is_used_and_its_test_reported() -> None:
    report = await probe_encoders("ffmpeg", "libx264")
    assert (report.selected, report.available) == ("libx264", ["libx264"])
    assert report.reason == "libx264 as configured (works)"
    report = await probe_encoders("ffmpeg", "h264_nvenc")
    assert report.selected == "h264_nvenc"
    assert report.reason == "h264_nvenc as configured (failed the test encode)"


async def test_missing_ffmpeg_is_reported() -> None:
    report = await probe_encoders("/nonexistent/ffmpeg", "auto")
    assert report.selected == "libx264"
    assert report.reason.startswith("ffmpeg -encoders failed")
