"""Capture settings service: stored per physical camera, refused while recording."""

from __future__ import annotations

from pathlib import Path

import pytest

from camera_service.cameras.capture_settings import CaptureSettingsService
from camera_service.cameras.controls import CameraUnavailable, ControlsUnsupported
from camera_service.cameras.registry import CameraRegistry
from camera_service.cameras.state_store import CameraStateStore
from camera_service.media.capture import CaptureRequest, CaptureSettingsError
from tests.support.fake_devices import fixture_capabilities

C920 = fixture_capabilities("uvc_c920_h264_capture")
PORT1 = "devices/usb1/1-1/1-1:1.0"


def _setup(
    tmp_path: Path,
    busy: set[str] | None = None,
    configured: dict[str, CaptureRequest] | None = None,
) -> tuple[CameraRegistry, CaptureSettingsService]:
    registry = CameraRegistry(schedule_expiry=False)
    service = CaptureSettingsService(
        registry,
        CameraStateStore(tmp_path),
        configured=configured,
        default_resolution="1280x720",
        default_fps=30,
        busy=lambda cid: "RECORDING" if cid in (busy or set()) else None,
    )
    return registry, service


async def test_settings_survive_a_restart_and_follow_the_physical_camera(tmp_path: Path) -> None:
    registry, service = _setup(tmp_path)
    cam = registry.device_added("/dev/video0", C920, stable_key=PORT1, serial_key="046d:082d:AB:00")
    assert cam is not None and cam.pixel_format == "H264" and cam.resolution == "1280x720"
    await service.update(cam.id, pixel_format="MJPG", resolution="1920x1080")
    # a new daemon (new registry and store) sees the same camera on another port by serial
    registry2, service2 = _setup(tmp_path)
    again = registry2.device_added(
        "/dev/video2", C920, stable_key="devices/usb1/1-2/1-2:1.0", serial_key="046d:082d:AB:00"
    )
    assert again is not None
    assert (again.pixel_format, again.resolution, again.fps) == ("MJPG", "1920x1080", 30)
    assert service2.settings(again.id)["pixel_format"] == "MJPG"


async def test_refused_while_recording_and_for_non_v4l2_cameras(tmp_path: Path) -> None:
    registry, service = _setup(tmp_path, busy={"camera0"})
    registry.device_added("/dev/video0", C920, stable_key=PORT1)
    with pytest.raises(CameraUnavailable) as busy:
        await service.update("camera0", fps=15)
    assert busy.value.state == "RECORDING"
    assert registry.get("camera0").fps == 30  # type: ignore[union-attr]
    registry.load_configured([{"id": "lab0", "input": "testsrc2", "input_format": "lavfi"}])
    with pytest.raises(ControlsUnsupported):
        service.settings("lab0")
    with pytest.raises(KeyError):
        service.settings("camera7")


async def test_config_settings_apply_and_bad_ones_fall_back_to_auto(tmp_path: Path) -> None:
    registry, _service = _setup(
        tmp_path,
        configured={
            "camera0": CaptureRequest("YUYV", "640x480", 30),
            "camera2": CaptureRequest("H265"),
        },
    )
    cam = registry.device_added("/dev/video0", C920, stable_key=PORT1)
    assert cam is not None and (cam.pixel_format, cam.resolution, cam.fps) == (
        "YUYV",
        "640x480",
        30,
    )
    other = registry.device_added("/dev/video2", C920, stable_key="devices/usb1/1-2/1-2:1.0")
    assert other is not None and other.pixel_format == "H264"  # H265: not offered → auto


async def test_invalid_update_changes_nothing(tmp_path: Path) -> None:
    registry, service = _setup(tmp_path)
    registry.device_added("/dev/video0", C920, stable_key=PORT1)
    with pytest.raises(CaptureSettingsError):
        await service.update("camera0", resolution="4096x2160")
    assert not (tmp_path / "camera_state.json").exists()
    assert registry.get("camera0").resolution == "1280x720"  # type: ignore[union-attr]
