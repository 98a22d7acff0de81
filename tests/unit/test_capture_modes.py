"""Capture-format selection against recorded capability sets, and the FFmpeg argv it yields."""

from __future__ import annotations

from pathlib import Path

import pytest

from camera_service.cameras.model import Camera, CameraKind, CameraStatus
from camera_service.media.capture import (
    CaptureRequest,
    CaptureSettingsError,
    choose_mode,
    v4l2_input_options,
    warmup_filter,
)
from camera_service.media.encoders import publish_args
from camera_service.media.recordings import EncoderSettings, build_recording_args
from camera_service.media.source import capture_source_for
from tests.support.fake_devices import fixture_capabilities

C920 = fixture_capabilities("uvc_c920_capture")  # YUYV + MJPG (current firmware)
C920_H264 = fixture_capabilities("uvc_c920_h264_capture")  # + H264 (older firmware)
GENERIC = fixture_capabilities("usb2_generic_capture")
RKISP = fixture_capabilities("rkisp1_mplane_stepwise")  # raw only (NV12, YUYV), stepwise


def _choose(caps, **kw):  # type: ignore[no-untyped-def]
    return choose_mode(caps, CaptureRequest(**kw), "640x480", 15)


def test_modes_are_kept_per_format() -> None:
    assert C920_H264.modes["YUYV"]["2304x1536"] == [2]
    assert C920_H264.modes["YUYV"]["1920x1080"] == [5]
    assert C920_H264.modes["MJPG"]["1920x1080"][0] == 30
    assert C920_H264.modes["H264"]["1920x1080"][0] == 30


def test_auto_prefers_h264_then_mjpg_at_the_requested_size() -> None:
    mode = _choose(C920_H264, resolution="1920x1080", fps=30)
    assert (mode.pixel_format, mode.resolution, mode.fps) == ("H264", "1920x1080", 30)
    assert mode.is_h264 and mode.reason.startswith("auto: compressed H264")
    mode = _choose(C920, resolution="1920x1080", fps=30)
    assert (mode.pixel_format, mode.resolution, mode.fps) == ("MJPG", "1920x1080", 30)


def test_auto_uses_raw_only_when_no_compressed_format_fits() -> None:
    mode = _choose(C920_H264, resolution="2304x1536", fps=2)
    assert (mode.pixel_format, mode.resolution, mode.fps) == ("YUYV", "2304x1536", 2)
    assert "no compressed format offers 2304x1536@2" in mode.reason
    # a size and rate both MJPG and YUYV deliver: still the compressed one
    mode = _choose(C920, resolution="640x480", fps=30)
    assert mode.pixel_format == "MJPG"
    # a raw-only camera
    mode = _choose(RKISP, resolution="1920x1080", fps=30)
    assert mode.pixel_format in ("NV12", "YUYV") and "raw" in mode.reason


def test_auto_with_no_exact_match_picks_the_closest_compressed_mode() -> None:
    # a default size nobody offers (an explicit one would be refused): the closest below
    mode = choose_mode(C920_H264, CaptureRequest(), "1920x1200", 30)
    assert (mode.pixel_format, mode.resolution, mode.fps) == ("H264", "1920x1080", 30)
    mode = _choose(C920_H264)  # defaults: 640x480@15
    assert (mode.pixel_format, mode.resolution, mode.fps) == ("H264", "640x480", 15)


def test_explicit_settings_are_validated_naming_the_allowed_values() -> None:
    mode = _choose(C920_H264, pixel_format="YUYV", resolution="1280x720", fps=10)
    assert (mode.pixel_format, mode.resolution, mode.fps) == ("YUYV", "1280x720", 10)
    with pytest.raises(CaptureSettingsError) as info:
        _choose(C920, pixel_format="H264")
    assert info.value.param == "pixel_format" and info.value.allowed == ["auto", "YUYV", "MJPG"]
    with pytest.raises(CaptureSettingsError) as info:
        _choose(C920, pixel_format="MJPG", resolution="2304x1536")
    assert info.value.param == "resolution" and "1920x1080" in info.value.allowed
    with pytest.raises(CaptureSettingsError) as info:
        _choose(C920, pixel_format="YUYV", resolution="1920x1080", fps=30)
    assert info.value.param == "fps" and info.value.allowed == [5]


def _camera(caps, mode):  # type: ignore[no-untyped-def]
    return Camera(
        "camera0",
        CameraKind.V4L2,
        CameraStatus.CONNECTED,
        "C920",
        mode.resolution,
        mode.fps,
        caps,
        "/dev/video0",
        pixel_format=mode.pixel_format,
    )


def test_h264_camera_is_recorded_and_published_by_copy(tmp_path: Path) -> None:
    mode = _choose(C920_H264, resolution="1920x1080", fps=30)
    source = capture_source_for(_camera(C920_H264, mode))
    assert source.input_args() == [
        "-f",
        "v4l2",
        "-thread_queue_size",
        "512",
        "-input_format",
        "h264",
        "-video_size",
        "1920x1080",
        "-framerate",
        "30",
        "-i",
        "/dev/video0",
    ]
    argv = build_recording_args(
        "ffmpeg",
        source,
        tmp_path / "r.mp4",
        "fmp4",
        None,
        EncoderSettings(codec="h264_vaapi"),
        tmp_path / "f.jpg",
    )
    first_output = argv[: argv.index(str(tmp_path / "r.mp4"))]
    assert first_output[first_output.index("-c:v") + 1] == "copy"
    assert "libx264" not in argv and "-vaapi_device" not in argv
    assert publish_args(source.is_h264, "libx264", 30, ["-c:v", "libx264"]) == (
        [],
        ["-an", "-c:v", "copy"],
    )


def test_mjpeg_camera_is_decoded_and_encoded_with_the_selected_encoder(tmp_path: Path) -> None:
    mode = _choose(C920, resolution="1920x1080", fps=30)
    source = capture_source_for(_camera(C920, mode))
    assert source.input_args()[4:6] == ["-input_format", "mjpeg"]
    argv = build_recording_args(
        "ffmpeg",
        source,
        tmp_path / "r.mp4",
        "fmp4",
        None,
        EncoderSettings(codec="libx264"),
        tmp_path / "f.jpg",
    )
    assert argv[argv.index("-c:v") + 1] == "libx264"
    argv = build_recording_args(
        "ffmpeg",
        source,
        tmp_path / "r.mp4",
        "fmp4",
        None,
        EncoderSettings(codec="h264_vaapi"),
        tmp_path / "f.jpg",
    )
    assert argv[argv.index("-vaapi_device") + 1] == "/dev/dri/renderD128"
    assert argv.index("-vaapi_device") < argv.index("-i")
    assert argv[argv.index("-c:v") + 1] == "h264_vaapi"
    before, after = publish_args(False, "h264_v4l2m2m", 30, ["-c:v", "libx264"])
    assert before == [] and after[after.index("-c:v") + 1] == "h264_v4l2m2m"


def test_unknown_or_unprobed_cameras_keep_ffmpeg_defaults() -> None:
    assert v4l2_input_options(None, None, None) == ["-f", "v4l2", "-thread_queue_size", "512"]
    assert warmup_filter(0) == []
    assert warmup_filter(5) == ["-vf", "select=gte(n\\,5)"]


def test_continuous_recording_uses_copy_or_the_selected_encoder(tmp_path: Path) -> None:
    from camera_service.media.continuous import build_continuous_args

    def argv(caps, mode, codec):  # type: ignore[no-untyped-def]
        return build_continuous_args(
            "ffmpeg", capture_source_for(_camera(caps, mode)), str(tmp_path / "%s.mp4"),
            tmp_path / "list.csv", 60, EncoderSettings(codec=codec), tmp_path / "f.jpg", 1.0,
            None, None)

    copied = argv(C920_H264, _choose(C920_H264, resolution="1920x1080", fps=30), "h264_vaapi")
    assert copied[copied.index("-c:v") + 1] == "copy" and "-vaapi_device" not in copied
    assert copied.index("-skip_frame") < copied.index("-i")
    encoded = argv(C920, _choose(C920, resolution="1920x1080", fps=30), "h264_vaapi")
    assert encoded[encoded.index("-c:v") + 1] == "h264_vaapi"
    assert encoded.index("-vaapi_device") < encoded.index("-i")
    assert "-force_key_frames" in encoded
    plain = argv(C920, _choose(C920, resolution="1920x1080", fps=30), "libx264")
    assert plain[plain.index("-c:v") + 1] == "libx264" and "-preset" in plain
