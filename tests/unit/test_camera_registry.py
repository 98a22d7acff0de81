"""CameraRegistry: ids, status transitions, forgetting, configured and external sources."""

from __future__ import annotations

import pytest

from camera_service.cameras.ids import node_number
from camera_service.cameras.model import (
    Camera,
    CameraKind,
    CameraStatus,
    ValidationStatus,
    is_valid_camera_id,
)
from camera_service.cameras.notifications import (
    TOPIC_CONNECTED,
    TOPIC_DISCONNECTED,
    TOPIC_STATUS_CHANGE,
)
from camera_service.cameras.registry import CameraIdError, CameraRegistry
from camera_service.cameras.sources import source_mode
from tests.support.clock import ManualClock as Clock
from tests.support.fake_devices import fixture_capabilities

C920 = fixture_capabilities("uvc_c920_capture")
C920_META = fixture_capabilities("uvc_c920_metadata")
GENERIC = fixture_capabilities("usb2_generic_capture")
PORT1 = "devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0"
PORT2 = "devices/pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.0"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def changes() -> list[tuple[str, str, CameraStatus]]:
    return []


@pytest.fixture
def forgotten() -> list[str]:
    return []


@pytest.fixture
def registry(
    clock: Clock, changes: list[tuple[str, str, CameraStatus]], forgotten: list[str]
) -> CameraRegistry:
    def on_change(cam: Camera, topic: str) -> None:
        changes.append((cam.id, topic, cam.status))

    return CameraRegistry(
        forget_after=300,
        clock=clock,
        wall_clock=clock,
        on_change=on_change,
        on_forgotten=lambda c: forgotten.append(c.id),
        schedule_expiry=False,
    )


@pytest.mark.parametrize("value", ["camera0", "a", "Front_door-2", "x" * 64, "0cam"])
def test_valid_ids(value: str) -> None:
    assert is_valid_camera_id(value)


@pytest.mark.parametrize(
    "value", ["", "_cam", "-x", "x" * 65, "cam 1", "cam/1", "../x", 5, None, "camé"]
)
def test_invalid_ids(value: object) -> None:
    assert not is_valid_camera_id(value)


def test_node_number() -> None:
    assert node_number("/dev/video12") == 12
    assert node_number("/dev/v4l/by-id/usb-cam") is None


def test_add_capture_node_connects(
    registry: CameraRegistry, changes: list[tuple[str, str, CameraStatus]]
) -> None:
    cam = registry.device_added("/dev/video0", C920, stable_key=PORT1)
    assert cam is not None
    assert (cam.id, cam.kind, cam.status, cam.name) == (
        "camera0",
        CameraKind.V4L2,
        CameraStatus.CONNECTED,
        "HD Pro Webcam C920",
    )
    assert (cam.resolution, cam.fps, cam.connected_at) == ("1280x720", 30, 1000.0)
    assert cam.validation_status is ValidationStatus.CONFIRMED
    assert changes == [("camera0", TOPIC_CONNECTED, CameraStatus.CONNECTED)]
    public = cam.public_dict({"rtsp": "rtsp://h:8554/camera0"})
    assert public == {
        "device": "camera0",
        "status": "CONNECTED",
        "name": "HD Pro Webcam C920",
        "resolution": "1280x720",
        "fps": 30,
        "streams": {"rtsp": "rtsp://h:8554/camera0"},
    }
    assert "/dev/" not in repr(public)


def test_metadata_and_secondary_nodes_are_not_listed(registry: CameraRegistry) -> None:
    assert registry.device_added("/dev/video1", C920_META, stable_key=PORT1) is None
    registry.device_added("/dev/video0", C920, stable_key=PORT1)
    # a second capture node of the same physical device (e.g. an IR sensor) is not a new camera
    assert registry.device_added("/dev/video2", C920, stable_key=PORT1) is None
    assert registry.device_error("/dev/video3", "I/O error", stable_key=PORT1) is None
    assert [c.id for c in registry.list()] == ["camera0"]


def test_unplug_then_forget_after(
    registry: CameraRegistry,
    clock: Clock,
    changes: list[tuple[str, str, CameraStatus]],
    forgotten: list[str],
) -> None:
    registry.device_added("/dev/video0", C920, stable_key=PORT1)
    clock.now += 10
    cam = registry.device_removed("/dev/video0")
    assert cam is not None and cam.status is CameraStatus.DISCONNECTED
    assert cam.disconnected_at == 1010.0
    assert cam.validation_status is ValidationStatus.DISCONNECTED
    assert changes[-1] == ("camera0", TOPIC_DISCONNECTED, CameraStatus.DISCONNECTED)
    assert registry.counts() == {"total": 1, "connected": 0, "disconnected": 1, "error": 0}
    assert registry.expire(clock.now + 299.9) == []
    assert registry.get("camera0") is not None
    gone = registry.expire(clock.now + 300)
    assert [c.id for c in gone] == ["camera0"] == forgotten
    assert registry.get("camera0") is None and registry.list() == []
    assert registry.device_removed("/dev/video0") is None  # idempotent


def test_replug_keeps_id_even_on_another_node(registry: CameraRegistry, clock: Clock) -> None:
    registry.device_added("/dev/video0", C920, stable_key=PORT1)
    registry.device_added("/dev/video2", GENERIC, stable_key=PORT2)
    registry.device_removed("/dev/video0")
    registry.device_removed("/dev/video2")
    back = registry.device_added("/dev/video4", GENERIC, stable_key=PORT2)
    assert back is not None and back.id == "camera2" and back.device_path == "/dev/video4"
    # even after being forgotten, the id is remembered for that port
    registry.expire(clock.now + 1000)
    assert registry.get("camera0") is None
    again = registry.device_added("/dev/video6", C920, stable_key=PORT1)
    assert again is not None and again.id == "camera0"


def test_serial_follows_device_to_another_port(registry: CameraRegistry) -> None:
    registry.device_added("/dev/video0", C920, stable_key=PORT1, serial_key="046d:082d:abc:00")
    registry.device_removed("/dev/video0")
    moved = registry.device_added(
        "/dev/video2", C920, stable_key=PORT2, serial_key="046d:082d:abc:00"
    )
    assert moved is not None and moved.id == "camera0" and moved.stable_key == PORT2


def test_new_device_on_a_node_whose_old_camera_is_still_listed(
    registry: CameraRegistry, clock: Clock
) -> None:
    registry.device_added("/dev/video0", C920, stable_key=PORT1)
    registry.device_removed("/dev/video0")
    other = registry.device_added("/dev/video0", GENERIC, stable_key=PORT2)
    assert other is not None and other.id == "camera1"  # camera0 still listed DISCONNECTED
    assert registry.get("camera0") is not None
    # once camera0 is forgotten, a new device at video0 may take the id over
    registry.device_removed("/dev/video0")
    registry.expire(clock.now + 1000)
    third = registry.device_added(
        "/dev/video0", C920, stable_key="devices/pci0000:00/usb1/1-3/1-3:1.0"
    )
    assert third is not None and third.id == "camera0"
    # and the old port-1 device then gets a fresh id, not camera0
    first = registry.device_added("/dev/video2", C920, stable_key=PORT1)
    assert first is not None and first.id not in {"camera0", "camera1"}


def test_error_then_recover(
    registry: CameraRegistry, changes: list[tuple[str, str, CameraStatus]]
) -> None:
    cam = registry.device_error(
        "/dev/video0", "probe timed out after 5 s", stable_key=PORT1, name="HD Pro Webcam C920"
    )
    assert cam is not None and cam.status is CameraStatus.ERROR
    assert (cam.id, cam.error, cam.name) == (
        "camera0",
        "probe timed out after 5 s",
        "HD Pro Webcam C920",
    )
    assert cam.validation_status is ValidationStatus.NONE
    assert (
        registry.device_error("/dev/video0", "probe timed out after 5 s", stable_key=PORT1)
        is not None
    )
    ok = registry.device_added("/dev/video0", C920, stable_key=PORT1)
    assert ok is not None and ok.status is CameraStatus.CONNECTED and ok.error is None
    assert [t for _, t, _ in changes] == [TOPIC_STATUS_CHANGE, TOPIC_CONNECTED]
    assert registry.counts()["error"] == 0


def test_connected_camera_detail_change_and_no_op(
    registry: CameraRegistry, changes: list[tuple[str, str, CameraStatus]]
) -> None:
    registry.device_added("/dev/video0", C920, stable_key=PORT1)
    registry.device_added("/dev/video0", C920, stable_key=PORT1)  # same data: no event
    registry.device_added("/dev/video0", GENERIC, stable_key=PORT1)
    assert [t for _, t, _ in changes] == [TOPIC_CONNECTED, TOPIC_STATUS_CHANGE]


def test_listener_failure_is_contained(registry: CameraRegistry) -> None:
    def broken(_cam: Camera, _topic: str) -> None:
        raise RuntimeError("boom")

    registry.add_listener(broken)
    assert registry.device_added("/dev/video0", C920, stable_key=PORT1) is not None


def test_configured_sources(registry: CameraRegistry) -> None:
    cams = registry.load_configured(
        [
            {
                "id": "test0",
                "name": "Test pattern",
                "input": "testsrc2=size=640x480:rate=15",
                "input_format": "lavfi",
                "exclusive": True,
            },
            {
                "id": "camera0",
                "input": "/dev/video0",
                "input_format": "v4l2",
                "resolution": "1920x1080",
                "fps": 25,
            },
        ]
    )
    assert [(c.id, c.kind, c.status, c.resolution, c.fps) for c in cams] == [
        ("test0", CameraKind.CONFIGURED, CameraStatus.CONNECTED, "640x480", 15),
        ("camera0", CameraKind.CONFIGURED, CameraStatus.CONNECTED, "1920x1080", 25),
    ]
    assert cams[0].source is not None and cams[0].source.exclusive
    assert cams[0].name == "Test pattern" and cams[1].name == "camera0"
    assert cams[0].capabilities.fps_options == {"640x480": [15]}
    # a USB camera on video0 does not steal the configured id
    usb = registry.device_added("/dev/video0", C920, stable_key=PORT1)
    assert usb is not None and usb.id == "camera1"
    assert registry.counts() == {"total": 3, "connected": 3, "disconnected": 0, "error": 0}
    assert [c.id for c in registry.list()] == ["camera0", "camera1", "test0"]


@pytest.mark.parametrize(
    "sources",
    [
        [{"id": "bad id", "input": "x"}],
        [{"id": "a", "input": "x"}, {"id": "a", "input": "y"}],
        [{"id": "a"}],
    ],
)
def test_configured_sources_rejected(
    registry: CameraRegistry, sources: list[dict[str, object]]
) -> None:
    with pytest.raises(ValueError):
        registry.load_configured(sources)
    assert registry.list() == []


def test_source_mode_defaults() -> None:
    assert source_mode({"input": "smptebars"}, "1280x720", 30) == ("1280x720", 30)
    assert source_mode({"input": "testsrc=s=320x240:r=5"}, "1280x720", 30) == ("320x240", 5)


def test_external_cameras(
    registry: CameraRegistry, forgotten: list[str], changes: list[tuple[str, str, CameraStatus]]
) -> None:
    cam = registry.add_external("door", "rtsp://10.0.0.5/live", "rtsp")
    assert (cam.kind, cam.status, cam.source and cam.source.input) == (
        CameraKind.EXTERNAL,
        CameraStatus.CONNECTED,
        "rtsp://10.0.0.5/live",
    )
    with pytest.raises(CameraIdError):
        registry.add_external("door", "rtsp://10.0.0.6/live", "rtsp")
    with pytest.raises(CameraIdError):
        registry.add_external("../etc", "rtsp://10.0.0.6/live", "rtsp")
    gone = registry.remove_external("door")
    assert gone is not None and gone.status is CameraStatus.DISCONNECTED
    assert registry.get("door") is None and forgotten == ["door"]
    assert changes[-1] == ("door", TOPIC_DISCONNECTED, CameraStatus.DISCONNECTED)
    assert registry.remove_external("door") is None


async def test_expiry_timer_runs_on_the_loop() -> None:
    import asyncio

    done = asyncio.Event()
    reg = CameraRegistry(forget_after=0.05, on_forgotten=lambda _c: done.set())
    reg.device_added("/dev/video0", C920, stable_key=PORT1)
    reg.device_removed("/dev/video0")
    await asyncio.wait_for(done.wait(), 2)
    assert reg.list() == []
    reg.close()
