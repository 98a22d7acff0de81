"""The controls service without a daemon: registry, state store and a fake kernel."""

from __future__ import annotations

from pathlib import Path

from camera_service.cameras import v4l2_abi as abi
from camera_service.cameras.controls import V4L2IO, ControlService
from camera_service.cameras.registry import CameraRegistry
from camera_service.cameras.state_store import CameraStateStore
from camera_service.events import Event
from tests.support.fake_controls import FakeControl, FakeControlDevice, FakeKernel, c920_controls
from tests.support.fake_devices import fixture_capabilities

PORT = "devices/usb1/1-1/1-1:1.0"


def _service(tmp_path: Path, device: FakeControlDevice) -> tuple[ControlService, list[Event]]:
    kernel = FakeKernel()
    kernel.add("/dev/video0", device)
    registry = CameraRegistry(schedule_expiry=False)
    events: list[Event] = []
    service = ControlService(
        registry,
        CameraStateStore(tmp_path),
        events.append,
        io=V4L2IO(kernel.open_fn, kernel.ioctl, kernel.close_fn),
    )
    registry.device_added("/dev/video0", fixture_capabilities("uvc_c920_capture"), stable_key=PORT)
    return service, events


async def test_reset_restores_values_without_pressing_buttons(tmp_path: Path) -> None:
    button = FakeControl(
        abi.CID_PAN_RESET,
        abi.CTRL_TYPE_BUTTON,
        "Pan, Reset",
        0,
        0,
        0,
        0,
        flags=abi.CTRL_FLAG_WRITE_ONLY | abi.CTRL_FLAG_EXECUTE_ON_WRITE,
    )
    device = FakeControlDevice([*c920_controls(), button])
    service, events = _service(tmp_path, device)
    listed = {c["name"]: c for c in await service.list_controls("camera0")}
    assert listed["pan_reset"]["type"] == "button" and listed["pan_reset"]["value"] is None
    report = await service.set_controls("camera0", {"brightness": 10, "pan_reset": True})
    assert report.applied == {"brightness": 10, "pan_reset": 1}
    assert (abi.CID_PAN_RESET, 1) in device.writes
    device.writes.clear()

    report, controls = await service.reset_controls("camera0")
    assert report.applied == {"brightness": 128}
    assert [w for w in device.writes if w[0] == abi.CID_PAN_RESET] == []
    assert {c["name"]: c["value"] for c in controls}["brightness"] == 128
    assert [e.params["reason"] for e in events] == ["set", "reset"]
    camera = service._cameras.get("camera0")
    assert camera is not None and service.desired(camera) == {}


async def test_reapply_of_a_vanished_device_reports_nothing(tmp_path: Path) -> None:
    device = FakeControlDevice()
    service, events = _service(tmp_path, device)
    await service.set_controls("camera0", {"gain": 9})
    device.vanished = True
    assert await service.reapply("camera0", "plugged") is None
    assert [e.params["reason"] for e in events] == ["set"]
