"""Discovery end to end with injected event sources, a fake sysfs tree and fake probes;
external stream persistence."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from camera_service.cameras.device_events import DeviceEvent, diff_scans, stable_key_from_sys_path
from camera_service.cameras.discovery import Discovery, create_discovery, create_event_source
from camera_service.cameras.external import (
    ExternalStreamError,
    ExternalStreamNotFound,
    ExternalStreamStore,
)
from camera_service.cameras.model import Camera, CameraStatus
from camera_service.cameras.notifications import (
    TOPIC_CONNECTED,
    TOPIC_DISCONNECTED,
    TOPIC_STATUS_CHANGE,
)
from camera_service.cameras.poll_source import PollEventSource, scan_nodes
from camera_service.cameras.registry import CameraRegistry
from camera_service.cameras.udev_source import UdevEventSource, event_from_udev
from tests.support.clock import ManualClock as Clock
from tests.support.fake_devices import (
    FakeDevice,
    FakeEventSource,
    FakeProber,
    FakeSysfs,
    uvc_webcam,
)

WAIT = 3.0


class Recorder:
    """Collects registry notifications; ``wait_for`` blocks until a predicate holds."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Camera]] = []
        self._changed = asyncio.Event()

    def __call__(self, camera: Camera, topic: str) -> None:
        self.events.append((topic, camera))
        self._changed.set()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = WAIT) -> None:
        async def loop() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(loop(), timeout)

    def topics(self, cam_id: str) -> list[str]:
        return [t for t, c in self.events if c.id == cam_id]


@pytest.fixture
def clock() -> Clock:
    return Clock(start=0.0)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def registry(recorder: Recorder, clock: Clock) -> CameraRegistry:
    reg = CameraRegistry(forget_after=300, on_change=recorder, clock=clock, schedule_expiry=False)
    return reg


@pytest.fixture
def prober() -> FakeProber:
    return FakeProber()


@pytest.fixture
def source(prober: FakeProber) -> FakeEventSource:
    return FakeEventSource(prober)


@pytest.fixture
async def make_discovery(
    source: FakeEventSource, prober: FakeProber, registry: CameraRegistry
) -> AsyncIterator[Callable[..., Discovery]]:
    started: list[Discovery] = []

    def make(**kw: object) -> Discovery:
        kw.setdefault("probe_timeout", 0.2)
        kw.setdefault("retry_delay", 0.01)
        kw.setdefault("resync_delay", 0.01)
        kw.setdefault("error_recheck_interval", None)
        disc = Discovery(source, prober, registry, **kw)  # type: ignore[arg-type]
        started.append(disc)
        return disc

    yield make
    prober.release.set()
    for disc in started:
        await disc.stop()


async def _started(disc: Discovery) -> Discovery:
    await disc.start()
    await asyncio.wait_for(disc.first_scan_done.wait(), WAIT)
    return disc


# --- injected source -------------------------------------------------------------------------


async def test_initial_scan_one_camera_per_physical_device(
    make_discovery: Callable[..., Discovery],
    source: FakeEventSource,
    registry: CameraRegistry,
    recorder: Recorder,
) -> None:
    cam_a = uvc_webcam(0, port="1")
    cam_b = uvc_webcam(2, port="2", fixture="usb2_generic")
    source.plug(*cam_b, *cam_a, announce=False)  # enumeration order must not matter
    disc = make_discovery()
    assert not disc.first_scan_done.is_set()
    await _started(disc)
    assert disc.active and disc.mode == "fake"
    cams = registry.list()
    assert [(c.id, c.device_path, c.status) for c in cams] == [
        ("camera0", "/dev/video0", CameraStatus.CONNECTED),
        ("camera2", "/dev/video2", CameraStatus.CONNECTED),
    ]
    assert cams[1].name == "USB 2.0 Camera: USB 2.0 Camera"
    assert cams[1].capabilities.formats == ["MJPG", "YUYV"]
    assert [t for t, _ in recorder.events] == [TOPIC_CONNECTED, TOPIC_CONNECTED]
    assert disc.status()["first_scan_done"] is True


async def test_plug_unplug_forget_replug(
    make_discovery: Callable[..., Discovery],
    source: FakeEventSource,
    registry: CameraRegistry,
    recorder: Recorder,
    clock: Clock,
) -> None:
    await _started(make_discovery())
    assert registry.list() == []
    capture, meta = uvc_webcam(0, port="3", serial="AB12")
    source.plug(capture, meta)
    await recorder.wait_for(lambda: recorder.topics("camera0") == [TOPIC_CONNECTED])
    _topic, cam = recorder.events[0]
    assert cam.public_dict() == {
        "device": "camera0",
        "status": "CONNECTED",
        "name": "HD Pro Webcam C920",
        "resolution": "1280x720",
        "fps": 30,
        "streams": {},
    }

    clock.now = 50.0
    source.unplug(capture.path, meta.path)
    await recorder.wait_for(lambda: TOPIC_DISCONNECTED in recorder.topics("camera0"))
    listed = registry.get("camera0")
    assert listed is not None and listed.status is CameraStatus.DISCONNECTED

    # replugged before forget_after, kernel picks other node numbers: same id
    capture2, meta2 = uvc_webcam(4, port="3", serial="AB12")
    source.plug(capture2, meta2)
    await recorder.wait_for(lambda: recorder.topics("camera0").count(TOPIC_CONNECTED) == 2)
    back = registry.get("camera0")
    assert back is not None and back.device_path == "/dev/video4"
    assert [c.id for c in registry.list()] == ["camera0"]

    source.unplug(capture2.path, meta2.path)
    await recorder.wait_for(lambda: recorder.topics("camera0").count(TOPIC_DISCONNECTED) == 2)
    assert registry.expire(clock.now + 299) == []
    assert [c.id for c in registry.expire(clock.now + 300)] == ["camera0"]
    assert registry.list() == []


async def test_probe_timeout_gives_error_and_discovery_continues(
    make_discovery: Callable[..., Discovery],
    source: FakeEventSource,
    prober: FakeProber,
    registry: CameraRegistry,
    recorder: Recorder,
) -> None:
    await _started(make_discovery(probe_retries=1))
    stuck = FakeDevice(
        "/dev/video0",
        "uvc_c920_capture",
        "devices/usb1/1-1/1-1:1.0",
        name="Stuck Cam",
        behaviour="hang",
    )
    source.plug(stuck)
    good, meta = uvc_webcam(2, port="2")
    source.plug(good, meta)
    await recorder.wait_for(lambda: registry.get("camera2") is not None)
    err = registry.get("camera0")
    assert err is not None and err.status is CameraStatus.ERROR
    assert err.error == "probe timed out after 0.2 s" and err.name == "Stuck Cam"
    assert prober.calls["/dev/video0"] == 2  # retried once
    assert recorder.topics("camera0") == [TOPIC_STATUS_CHANGE]
    cam2 = registry.get("camera2")
    assert cam2 is not None and cam2.status is CameraStatus.CONNECTED


async def test_vanishing_device_and_flaky_probe(
    make_discovery: Callable[..., Discovery],
    source: FakeEventSource,
    prober: FakeProber,
    registry: CameraRegistry,
    recorder: Recorder,
) -> None:
    flaky = FakeDevice(
        "/dev/video2",
        "usb2_generic_capture",
        "devices/usb1/1-2/1-2:1.0",
        behaviour="flaky",
        fail_times=1,
        error="VIDIOC_QUERYCAP failed: EIO",
    )
    source.plug(flaky, announce=False)
    disc = await _started(make_discovery(probe_retries=2))
    assert registry.get("camera2") is not None  # first attempt failed, retry succeeded
    assert prober.calls["/dev/video2"] == 2

    ghost = FakeDevice(
        "/dev/video0", "uvc_c920_capture", "devices/usb1/1-1/1-1:1.0", behaviour="vanish"
    )
    source.plug(ghost)
    await recorder.wait_for(lambda: registry.get("camera0") is not None)
    cam = registry.get("camera0")
    assert cam is not None and cam.status is CameraStatus.ERROR
    assert cam.error is not None and "vanished" in cam.error
    assert prober.calls["/dev/video0"] == 1  # vanished: no retry
    source.unplug("/dev/video0")
    await recorder.wait_for(lambda: TOPIC_DISCONNECTED in recorder.topics("camera0"))
    assert disc.active and disc.last_error is not None


async def test_error_camera_rechecked_until_it_works(
    make_discovery: Callable[..., Discovery],
    source: FakeEventSource,
    registry: CameraRegistry,
    recorder: Recorder,
) -> None:
    slow = FakeDevice(
        "/dev/video0",
        "uvc_c920_capture",
        "devices/usb1/1-1/1-1:1.0",
        behaviour="flaky",
        fail_times=1,
    )
    source.plug(slow, announce=False)
    await _started(make_discovery(probe_retries=0, error_recheck_interval=0.02))
    await recorder.wait_for(
        lambda: recorder.topics("camera0") == [TOPIC_STATUS_CHANGE, TOPIC_CONNECTED]
    )
    cam = registry.get("camera0")
    assert cam is not None and cam.status is CameraStatus.CONNECTED


async def test_source_failure_resyncs(
    make_discovery: Callable[..., Discovery],
    source: FakeEventSource,
    registry: CameraRegistry,
    recorder: Recorder,
) -> None:
    capture, meta = uvc_webcam(0)
    source.plug(capture, meta, announce=False)
    disc = await _started(make_discovery())
    # events lost while the monitor was broken: the device went away silently
    source.present.clear()
    source.prober.devices.clear()
    source.fail()
    await recorder.wait_for(lambda: TOPIC_DISCONNECTED in recorder.topics("camera0"))
    assert source.starts == 2 and source.closes == 1 and source.enumerations == 2
    assert disc.active
    assert disc.last_error == "udev monitor error: ENOBUFS"
    # and it keeps handling events afterwards
    source.plug(*uvc_webcam(0))
    await recorder.wait_for(lambda: recorder.topics("camera0").count(TOPIC_CONNECTED) == 2)


async def test_stop_while_events_are_being_handled(
    make_discovery: Callable[..., Discovery], source: FakeEventSource, recorder: Recorder
) -> None:
    disc = await _started(make_discovery())
    for n in range(0, 40, 2):
        source.plug(*uvc_webcam(n, port=str(n)))
    await recorder.wait_for(lambda: len(recorder.events) >= 3)
    await asyncio.wait_for(disc.stop(), WAIT)
    assert not disc.active and source.closes == 1


async def test_discovery_off(registry: CameraRegistry, prober: FakeProber) -> None:
    disc = Discovery(None, prober, registry)
    await disc.start()
    assert disc.first_scan_done.is_set() and not disc.active and disc.mode == "off"
    await disc.stop()
    assert create_event_source("off") is None


# --- polling source on a fake sysfs tree -----------------------------------------------------


async def test_poll_source_sees_the_same_devices(
    tmp_path: Path, prober: FakeProber, registry: CameraRegistry, recorder: Recorder
) -> None:
    tree = FakeSysfs(tmp_path)
    tree.add_node(0, port="1", serial="AB12")
    tree.add_node(1, port="1", index=1)  # metadata node, same interface
    for dev in uvc_webcam(0, port="1", serial="AB12"):
        prober.devices[dev.path.replace("/dev", str(tree.dev_root))] = dev

    source = PollEventSource(poll_interval=0.02, sys_root=tree.sys_root, dev_root=tree.dev_root)
    disc = Discovery(source, prober, registry, error_recheck_interval=None)
    await disc.start()
    try:
        await asyncio.wait_for(disc.first_scan_done.wait(), WAIT)
        cams = registry.list()
        assert [(c.id, c.device_path, c.stable_key, c.serial_key) for c in cams] == [
            ("camera0", str(tree.dev_root / "video0"), tree.stable_key("1"), "046d:082d:ab12:00")
        ]

        tree.add_node(2, port="2", name="USB 2.0 Camera: USB 2.0 Camera")
        prober.devices[str(tree.dev_root / "video2")] = FakeDevice(
            str(tree.dev_root / "video2"), "usb2_generic_capture"
        )
        await recorder.wait_for(lambda: registry.get("camera2") is not None)

        tree.remove_node(0)
        tree.remove_node(1)
        await recorder.wait_for(lambda: TOPIC_DISCONNECTED in recorder.topics("camera0"))
        tree.add_node(0, port="1", serial="AB12")
        tree.add_node(1, port="1", index=1)
        await recorder.wait_for(lambda: recorder.topics("camera0").count(TOPIC_CONNECTED) == 2)
        assert [c.id for c in registry.list()] == ["camera0", "camera2"]
    finally:
        await disc.stop()


def test_scan_and_diff_are_pure(tmp_path: Path) -> None:
    tree = FakeSysfs(tmp_path)
    tree.add_node(0, port="1")
    tree.add_node(10, port="4")
    before = scan_nodes(tree.dev_root, tree.sys_root)
    assert list(before) == [str(tree.dev_root / "video0"), str(tree.dev_root / "video10")]
    ev = before[str(tree.dev_root / "video0")]
    assert ev.attrs == {"name": "HD Pro Webcam C920", "index": "0", "dev": "81:0"}
    assert ev.serial_key is None
    (tree.dev_root / "video3").touch()  # node without sysfs entry (container) is still seen
    tree.remove_node(10)
    after = scan_nodes(tree.dev_root, tree.sys_root)
    changes = [(e.action, Path(e.device_path).name) for e in diff_scans(before, after)]
    assert changes == [("remove", "video10"), ("add", "video3")]
    assert scan_nodes(tmp_path / "missing", tree.sys_root) == {}


def test_fallback_to_poll_when_udevd_missing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = CameraRegistry(schedule_expiry=False)
    with caplog.at_level(logging.WARNING):
        disc = create_discovery(
            registry,
            mode="udev",
            udev_control_path=str(tmp_path / "no-udevd"),
            poll_interval=7,
            sys_root=str(tmp_path),
            dev_root=str(tmp_path),
        )
    assert isinstance(disc.source, PollEventSource) and disc.source.poll_interval == 7
    assert [r.message for r in caplog.records if "unavailable" in r.message] == [
        f"udev camera discovery unavailable: udevd is not running ({tmp_path}/no-udevd "
        "missing); polling every 7 s instead"
    ]
    with pytest.raises(ValueError):
        create_event_source("sometimes")


# --- udev ------------------------------------------------------------------------------------


def test_event_from_udev_record() -> None:
    sys_path = "/sys/devices/pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.0/video4linux/video0"
    ev = event_from_udev(
        "add",
        "/dev/video0",
        sys_path,
        {
            "ID_V4L_PRODUCT": "HD Pro Webcam C920",
            "ID_VENDOR_ID": "046d",
            "ID_MODEL_ID": "082d",
            "ID_SERIAL_SHORT": "A1B2C3",
            "ID_USB_INTERFACE_NUM": "00",
            "DEVNAME": "/dev/video0",
        },
    )
    assert ev == DeviceEvent(
        "add",
        "/dev/video0",
        {
            "ID_V4L_PRODUCT": "HD Pro Webcam C920",
            "ID_VENDOR_ID": "046d",
            "ID_MODEL_ID": "082d",
            "ID_SERIAL_SHORT": "A1B2C3",
            "ID_USB_INTERFACE_NUM": "00",
        },
        "devices/pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.0",
        "046d:082d:a1b2c3:00",
    )
    assert ev.name == "HD Pro Webcam C920"
    assert event_from_udev("bind", "/dev/video0", sys_path, {}) is None
    assert event_from_udev("add", None, sys_path, {}) is None
    assert stable_key_from_sys_path("/other/a/video4linux/video0") == "/other/a"


def _udev_usable() -> str | None:
    try:
        import pyudev

        pyudev.Monitor.from_netlink(pyudev.Context())
    except Exception as exc:
        return f"pyudev/netlink unusable here: {exc}"
    return None


@pytest.mark.skipif(_udev_usable() is not None, reason=str(_udev_usable()))
async def test_udev_source_starts_and_enumerates() -> None:
    """Without udevd or cameras we can only check the plumbing: monitor on the loop,
    enumeration through libudev, clean close."""
    src = UdevEventSource()
    await src.start()
    try:
        events = await src.enumerate()
        assert all(e.action == "add" and e.device_path.startswith("/dev/") for e in events)
        assert src._monitor is not None
    finally:
        await src.close()
    assert src._monitor is None


# --- external streams ------------------------------------------------------------------------


async def test_external_streams_persist_across_restart(
    tmp_path: Path, registry: CameraRegistry
) -> None:
    store = ExternalStreamStore(tmp_path / "state", clock=lambda: 1700000000.0)
    added = await store.add(
        "rtsp://user:pw@192.168.1.20:554/stream1", "front_door", reserved_ids=registry.ids()
    )
    assert added.stream_type == "rtsp"
    await store.add("https://cams.example.org/live/index.m3u8", "yard", "hls")
    registry.add_external(added.stream_name, added.stream_url, added.stream_type)
    mode = stat.S_IMODE(os.stat(store.path).st_mode)
    assert mode == 0o600
    assert [p.name for p in store.path.parent.iterdir()] == ["external_streams.json"]

    reopened = ExternalStreamStore(tmp_path / "state")
    assert [(s.stream_name, s.stream_type) for s in reopened.list()] == [
        ("front_door", "rtsp"),
        ("yard", "hls"),
    ]
    assert reopened.list()[0].added_at == 1700000000.0

    with pytest.raises(ExternalStreamError) as dup:
        await reopened.add("rtsp://192.168.1.20:554/stream1", "yard")
    assert dup.value.param == "stream_name" and dup.value.rule == "duplicate"
    with pytest.raises(ExternalStreamError) as dup_url:
        await reopened.add("https://cams.example.org/live/index.m3u8", "other")
    assert dup_url.value.rule == "duplicate"
    with pytest.raises(ExternalStreamError):
        await reopened.add("rtsp://10.0.0.1/x", "front_door2", reserved_ids={"front_door2"})

    removed = await reopened.remove("https://cams.example.org/live/index.m3u8")
    assert removed.stream_name == "yard"
    with pytest.raises(ExternalStreamNotFound):
        await reopened.remove("https://cams.example.org/live/index.m3u8")
    assert [s.stream_name for s in ExternalStreamStore(tmp_path / "state").list()] == ["front_door"]


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("file:///etc/passwd", "scheme"),
        ("javascript:alert(1)", "scheme"),
        ("ftp://host/x", "scheme"),
        ("rtsp://", "host"),
        ("rtsp:///path", "host"),
        ("http://:8080/x", "host"),
        ("rtsp://host:99999/x", "format"),
        ("rtsp://host/a b", "format"),
        ("", "type"),
        ("rtsp://h/" + "x" * 3000, "max_length"),
        ("rtsp://user@cam.example/live", "credentials"),  # MediaMTX refuses it
        ("rtsp://:secret@cam.example/live", "credentials"),
    ],
)
async def test_external_stream_url_rejected(tmp_path: Path, url: str, rule: str) -> None:
    store = ExternalStreamStore(tmp_path)
    with pytest.raises(ExternalStreamError) as err:
        await store.add(url, "cam1")
    assert err.value.param == "stream_url" and err.value.rule == rule
    assert store.list() == [] and not store.path.exists()


@pytest.mark.parametrize("name", ["", "bad name", "../x", "-x", "x" * 65, 7])
async def test_external_stream_name_rejected(tmp_path: Path, name: object) -> None:
    with pytest.raises(ExternalStreamError) as err:
        await ExternalStreamStore(tmp_path).add("rtsp://10.0.0.1/s", name)
    assert err.value.param == "stream_name"


def test_corrupt_external_store_is_set_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "external_streams.json").write_text(json.dumps([{"stream_url": "file:///x"}]))
    with caplog.at_level(logging.ERROR):
        store = ExternalStreamStore(tmp_path)
    assert store.list() == []
    assert any(p.name.startswith("external_streams.json.corrupt-") for p in tmp_path.iterdir())
    # The log line names the file and the problem.
    assert "external_streams.json is unusable" in caplog.text
    assert "scheme must be one of" in caplog.text
