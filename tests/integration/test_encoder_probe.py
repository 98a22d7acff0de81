"""The H.264 encoder probe against this machine's FFmpeg (no encoder hardware here), run
through the daemon's process supervisor."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from camera_service.media.encoders import HARDWARE_ENCODERS, probe_encoders, supervised
from camera_service.media.ffmpeg import ProcessSupervisor


@pytest.fixture
async def supervisor() -> AsyncIterator[ProcessSupervisor]:
    sup = ProcessSupervisor()
    yield sup
    await sup.shutdown()


@pytest.mark.skipif(os.path.exists("/dev/dri/renderD128"), reason="a GPU may really encode here")
async def test_auto_falls_back_to_libx264_and_says_why(supervisor: ProcessSupervisor) -> None:
    report = await probe_encoders("ffmpeg", "auto", supervised(supervisor))
    assert report.selected == "libx264"
    assert report.available == ["libx264"]
    assert report.reason == "no hardware H.264 encoder works here: libx264"
    # every hardware encoder really ran a test encode (Debian's FFmpeg has the wrappers built
    # in) and failed for want of hardware, which is what the report says
    assert set(report.unavailable) == set(HARDWARE_ENCODERS)
    for name in HARDWARE_ENCODERS:
        assert report.unavailable[name] and report.unavailable[name] != "not built into this FFmpeg"
    probes = [h for h in supervisor.history() if h.role == "encoder-probe"]
    assert len(probes) == len(HARDWARE_ENCODERS) + 1
    assert all(not h.running for h in probes)


async def test_explicit_encoder_is_used_and_its_test_reported(
    supervisor: ProcessSupervisor,
) -> None:
    report = await probe_encoders("ffmpeg", "libx264", supervised(supervisor))
    assert (report.selected, report.available) == ("libx264", ["libx264"])
    assert report.reason == "libx264 as configured (works)"
    report = await probe_encoders("ffmpeg", "h264_nvenc", supervised(supervisor))
    assert report.selected == "h264_nvenc"
    assert report.reason == "h264_nvenc as configured (failed the test encode)"


async def test_missing_ffmpeg_is_reported(supervisor: ProcessSupervisor) -> None:
    report = await probe_encoders("/nonexistent/ffmpeg", "auto", supervised(supervisor))
    assert report.selected == "libx264" and report.available == []
    assert report.reason.startswith("no H.264 encoder passed the test encode")
