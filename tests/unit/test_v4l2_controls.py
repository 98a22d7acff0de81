"""Camera controls through the real request/decode path against a fake kernel."""

from __future__ import annotations

import errno

import pytest

from camera_service.cameras import v4l2_abi as abi
from camera_service.cameras.v4l2_controls import (
    ControlIOError,
    apply_values,
    query_controls,
    read_values,
    snake_name,
    validate_value,
)
from tests.support.fake_controls import FakeControlDevice


def _controls(dev: FakeControlDevice) -> dict[str, dict[str, object]]:
    return {c.key: c.public_dict() for c in read_values(3, dev, query_controls(3, dev))}


def test_snake_names_follow_v4l2_names() -> None:
    assert snake_name("Exposure Time, Absolute") == "exposure_time_absolute"
    assert snake_name("Focus, Automatic Continuous") == "focus_automatic_continuous"
    assert snake_name("White Balance Temperature") == "white_balance_temperature"


def test_query_lists_controls_with_menus_values_and_flags() -> None:
    dev = FakeControlDevice()
    controls = _controls(dev)
    # control-class headings and disabled controls are not listed
    assert "user_controls" not in controls and "camera_controls" not in controls
    assert "backlight_compensation" not in controls
    assert controls["brightness"] == {
        "name": "brightness",
        "label": "Brightness",
        "type": "integer",
        "min": 0,
        "max": 255,
        "step": 1,
        "default": 128,
        "value": 128,
        "flags": [],
    }
    power = controls["power_line_frequency"]
    assert power["type"] == "menu"
    assert power["menu"] == [
        {"value": 0, "label": "Disabled"},
        {"value": 1, "label": "50 Hz"},
        {"value": 2, "label": "60 Hz"},
    ]
    # a menu with holes lists only the entries the driver answers
    assert [m["value"] for m in controls["auto_exposure"]["menu"]] == [1, 3]  # type: ignore[index]
    assert controls["focus_automatic_continuous"]["value"] is True
    assert "inactive" in controls["focus_absolute"]["flags"]  # type: ignore[operator]
    assert "read_only" in controls["privacy"]["flags"]  # type: ignore[operator]
    assert controls["pan_absolute"]["type"] == "integer64"


def test_set_applies_in_dependency_order_and_rejects_per_control() -> None:
    dev = FakeControlDevice()
    controls = query_controls(3, dev)
    report = apply_values(
        3,
        dev,
        controls,
        {
            "focus_absolute": 120,  # inactive until autofocus is off (same request)
            "focus_automatic_continuous": False,
            "brightness": 300,  # out of range
            "zoom_absolute": 150,
            "privacy": True,  # read-only
            "sharpness": "high",  # wrong type
            "no_such_thing": 1,
            "power_line_frequency": 1,
            "pan_absolute": -7200,  # 64-bit, step 3600
            "white_balance_temperature": 5000,  # inactive: auto white balance stays on
        },
    )
    assert report.applied == {
        "focus_automatic_continuous": False,
        "focus_absolute": 120,
        "zoom_absolute": 150,
        "power_line_frequency": 1,
        "pan_absolute": -7200,
    }
    assert report.rejected["brightness"] == "out of range (0..255)"
    assert report.rejected["privacy"] == "read-only control"
    assert report.rejected["sharpness"] == "expected an integer"
    assert report.rejected["no_such_thing"] == "no such control on this camera"
    assert report.rejected["white_balance_temperature"].startswith("control is inactive")
    assert dev.value_of(abi.CID_FOCUS_ABSOLUTE) == 120
    assert dev.value_of(abi.CID_BRIGHTNESS) == 128  # rejected values change nothing
    assert dev.value_of(abi.CID_PAN_ABSOLUTE) == -7200


def test_validation_rules() -> None:
    dev = FakeControlDevice()
    by_name = {c.key: c for c in query_controls(3, dev)}
    assert validate_value(by_name["focus_absolute"], 7) == (
        None,
        "not on the step grid (min 0, step 5)",
    )
    assert validate_value(by_name["auto_exposure"], 2)[1] == "not a menu entry (allowed: 1, 3)"
    assert validate_value(by_name["exposure_dynamic_framerate"], 1) == (1, None)
    assert validate_value(by_name["exposure_dynamic_framerate"], 2)[1] == "expected true or false"


def test_vanished_device_raises() -> None:
    dev = FakeControlDevice()
    controls = query_controls(3, dev)
    dev.vanished = True
    with pytest.raises(ControlIOError) as info:
        apply_values(3, dev, controls, {"brightness": 10})
    assert info.value.errno == errno.ENODEV
    assert info.value.reason == "camera vanished"
