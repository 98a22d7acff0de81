"""Fake V4L2 hardware for tests: fixture devices, a fake kernel ioctl, event source, prober,
and a fake sysfs/dev tree for the polling source.

Fixtures (``tests/data/v4l2/*.json``) describe what the kernel answers to QUERYCAP /
ENUM_FMT / ENUM_FRAMESIZES / ENUM_FRAMEINTERVALS for one node.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import json
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from camera_service.cameras import v4l2_abi as abi
from camera_service.cameras.discovery import DeviceEvent, EventSourceError
from camera_service.cameras.model import Capabilities
from camera_service.cameras.v4l2 import (
    build_capabilities,
    capture_buf_type,
)
from camera_service.cameras.v4l2_abi import (
    FMTDESC_STRUCT,
    FRMIVAL_STRUCT,
    FRMIVAL_TYPE_CONTINUOUS,
    FRMIVAL_TYPE_STEPWISE,
    FRMSIZE_STRUCT,
    FRMSIZE_TYPE_STEPWISE,
    VIDIOC_ENUM_FMT,
    VIDIOC_ENUM_FRAMEINTERVALS,
    VIDIOC_ENUM_FRAMESIZES,
    VIDIOC_QUERYCAP,
    DeviceCapability,
    DeviceVanishedError,
    FormatEntry,
    FrameInterval,
    FrameSize,
    ProbeError,
    RawDeviceInfo,
    SizeEntry,
    encode_capability,
    encode_fmtdesc,
    encode_frmival,
    encode_frmsize,
    str_to_fourcc,
)

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "v4l2"


# --- fixtures --------------------------------------------------------------------------------


def _int(value: str | int) -> int:
    return int(value, 0) if isinstance(value, str) else value


def _intervals(spec: Any) -> list[FrameInterval]:
    if isinstance(spec, dict):
        kind, (fastest, slowest) = next(iter(spec.items()))
        ival_type = FRMIVAL_TYPE_CONTINUOUS if kind == "continuous" else FRMIVAL_TYPE_STEPWISE
        return [FrameInterval(ival_type, fastest[0], fastest[1], slowest[0], slowest[1])]
    return [FrameInterval.discrete(num, den) for num, den in spec]


def _size(spec: dict[str, Any]) -> SizeEntry:
    if "discrete" in spec:
        size = FrameSize.discrete(*spec["discrete"])
    else:
        size = FrameSize(FRMSIZE_TYPE_STEPWISE, *spec["stepwise"])
    return SizeEntry(size, _intervals(spec.get("intervals", [])))


def raw_from_fixture(data: dict[str, Any]) -> RawDeviceInfo:
    cap = data["capability"]
    card = bytes.fromhex(cap["card_hex"]).decode("latin-1") if "card_hex" in cap else cap["card"]
    capability = DeviceCapability(
        driver=cap["driver"],
        card=card,
        bus_info=cap["bus_info"],
        version=_int(cap["version"]),
        capabilities=_int(cap["capabilities"]),
        device_caps=_int(cap["device_caps"]),
    )
    formats = [
        FormatEntry(
            pixelformat=(str_to_fourcc(f["fourcc"]) if "fourcc" in f else _int(f["fourcc_int"])),
            description=f["description"],
            flags=f["flags"],
            sizes=[_size(s) for s in f["sizes"]],
        )
        for f in data["formats"]
    ]
    return RawDeviceInfo(capability, formats)


def load_fixture(name: str) -> RawDeviceInfo:
    path = DATA_DIR / (name if name.endswith(".json") else f"{name}.json")
    return raw_from_fixture(json.loads(path.read_text(encoding="utf-8")))


def fixture_capabilities(name: str) -> Capabilities:
    return build_capabilities(load_fixture(name))


def load_hex(name: str) -> bytes:
    return bytes.fromhex((DATA_DIR / name).read_text(encoding="ascii").strip())


# --- fake kernel -----------------------------------------------------------------------------


def _os_error(code: int) -> OSError:
    return OSError(code, os.strerror(code))


class FakeIoctl:
    """Answers V4L2 ioctls for one fixture device the way the kernel does (EINVAL = end).

    ``card_bytes`` overrides the raw card field (for undecodable names); ``fail`` maps a
    request to an errno; ``vanish_after`` raises ENODEV from the N-th call on; ``endless``
    never ends enumerations (a buggy driver).
    """

    def __init__(
        self,
        info: RawDeviceInfo,
        *,
        fail: dict[int, int] | None = None,
        vanish_after: int | None = None,
        endless: bool = False,
    ) -> None:
        self.info = info
        self.fail = fail or {}
        self.vanish_after = vanish_after
        self.endless = endless
        self.calls: list[int] = []

    def __call__(self, fd: int, request: int, arg: bytes) -> bytes:
        self.calls.append(request)
        if self.vanish_after is not None and len(self.calls) > self.vanish_after:
            raise _os_error(errno.ENODEV)
        if request in self.fail:
            raise _os_error(self.fail[request])
        if request == VIDIOC_QUERYCAP:
            return self._querycap()
        if request == VIDIOC_ENUM_FMT:
            return self._enum_fmt(arg)
        if request == VIDIOC_ENUM_FRAMESIZES:
            return self._enum_sizes(arg)
        if request == VIDIOC_ENUM_FRAMEINTERVALS:
            return self._enum_intervals(arg)
        raise _os_error(errno.ENOTTY)

    def _querycap(self) -> bytes:
        cap = self.info.capability
        raw = encode_capability(
            DeviceCapability(
                cap.driver, "", cap.bus_info, cap.version, cap.capabilities, cap.device_caps
            )
        )
        card = cap.card.encode("latin-1", errors="replace")[:32].ljust(32, b"\0")
        return raw[:16] + card + raw[48:]

    def _format(self, index: int) -> FormatEntry:
        if self.endless:
            return FormatEntry(str_to_fourcc("YUYV"), "endless")
        if index >= len(self.info.formats):
            raise _os_error(errno.EINVAL)
        return self.info.formats[index]

    def _enum_fmt(self, arg: bytes) -> bytes:
        index, buf_type, *_ = FMTDESC_STRUCT.unpack(arg)
        if buf_type != capture_buf_type(self.info.capability.node_caps):
            raise _os_error(errno.EINVAL)
        fmt = self._format(index)
        return encode_fmtdesc(index, buf_type, fmt.flags, fmt.description, fmt.pixelformat)

    def _find(self, pixelformat: int) -> FormatEntry:
        for fmt in self.info.formats:
            if fmt.pixelformat == pixelformat:
                return fmt
        if self.endless:
            return FormatEntry(pixelformat, "endless")
        raise _os_error(errno.EINVAL)

    def _enum_sizes(self, arg: bytes) -> bytes:
        index, pixelformat, *_ = FRMSIZE_STRUCT.unpack(arg)
        fmt = self._find(pixelformat)
        if self.endless:
            return encode_frmsize(index, pixelformat, FrameSize.discrete(640, 480))
        if index >= len(fmt.sizes):
            raise _os_error(errno.EINVAL)
        return encode_frmsize(index, pixelformat, fmt.sizes[index].size)

    def _enum_intervals(self, arg: bytes) -> bytes:
        index, pixelformat, width, height, *_ = FRMIVAL_STRUCT.unpack(arg)
        fmt = self._find(pixelformat)
        if self.endless:
            return encode_frmival(index, pixelformat, width, height, FrameInterval.discrete(1, 30))
        for entry in fmt.sizes:
            if (entry.size.max_width, entry.size.max_height) == (width, height):
                if index >= len(entry.intervals):
                    raise _os_error(errno.EINVAL)
                return encode_frmival(index, pixelformat, width, height, entry.intervals[index])
        raise _os_error(errno.EINVAL)


# --- fake devices, prober and event source ---------------------------------------------------


@dataclass
class FakeDevice:
    """A fake V4L2 node. ``behaviour``: ok | hang | vanish | error | flaky (fails
    ``fail_times`` probes, then ok)."""

    path: str
    fixture: str
    stable_key: str | None = None
    serial_key: str | None = None
    name: str | None = None
    behaviour: str = "ok"
    error: str = "I/O error"
    fail_times: int = 0

    def event(self, action: str) -> DeviceEvent:
        attrs = {"name": self.name} if self.name else {}
        return DeviceEvent(action, self.path, attrs, self.stable_key, self.serial_key)


def uvc_webcam(
    first_node: int,
    *,
    port: str = "1",
    fixture: str = "uvc_c920",
    serial: str | None = None,
    **capture_kw: Any,
) -> tuple[FakeDevice, FakeDevice]:
    """A UVC camera: capture node ``video<first_node>`` + metadata node the next number."""
    key = f"devices/pci0000:00/0000:00:14.0/usb1/1-{port}/1-{port}:1.0"
    serial_key = f"046d:082d:{serial}:00".lower() if serial else None
    capture = FakeDevice(
        f"/dev/video{first_node}",
        f"{fixture}_capture",
        key,
        serial_key,
        "HD Pro Webcam C920",
        **capture_kw,
    )
    meta = FakeDevice(
        f"/dev/video{first_node + 1}", f"{fixture}_metadata", key, serial_key, "HD Pro Webcam C920"
    )
    return capture, meta


class FakeProber:
    """Returns fixture capabilities for known paths; unknown paths have vanished."""

    def __init__(self) -> None:
        self.devices: dict[str, FakeDevice] = {}
        self.calls: dict[str, int] = {}
        self.release = asyncio.Event()  # set it to let hanging probes finish (as vanished)
        self.hanging = asyncio.Event()  # set when a probe starts hanging

    async def probe(self, device_path: str) -> Capabilities:
        self.calls[device_path] = self.calls.get(device_path, 0) + 1
        await asyncio.sleep(0)
        dev = self.devices.get(device_path)
        if dev is None or dev.behaviour == "vanish":
            raise DeviceVanishedError("device vanished during probe (open)")
        if dev.behaviour == "hang":
            self.hanging.set()
            await self.release.wait()
            raise DeviceVanishedError("device vanished during probe (VIDIOC_QUERYCAP)")
        if dev.behaviour == "error":
            raise ProbeError(dev.error)
        if dev.behaviour == "flaky" and self.calls[device_path] <= dev.fail_times:
            raise ProbeError(dev.error)
        return fixture_capabilities(dev.fixture)


class FakeEventSource:
    """Injected event source: ``plug`` / ``unplug`` / ``change`` / ``fail``."""

    name = "fake"

    def __init__(self, prober: FakeProber) -> None:
        self.prober = prober
        self.present: dict[str, FakeDevice] = {}
        self._queue: asyncio.Queue[DeviceEvent | EventSourceError] = asyncio.Queue()
        self.starts = 0
        self.closes = 0
        self.enumerations = 0

    def plug(self, *devices: FakeDevice, announce: bool = True) -> None:
        for dev in devices:
            self.present[dev.path] = dev
            self.prober.devices[dev.path] = dev
            if announce:
                self._queue.put_nowait(dev.event("add"))

    def unplug(self, *paths: str) -> None:
        for path in paths:
            dev = self.present.pop(path)
            self.prober.devices.pop(path, None)
            self._queue.put_nowait(dev.event("remove"))

    def change(self, path: str) -> None:
        self._queue.put_nowait(self.present[path].event("change"))

    def fail(self, message: str = "udev monitor error: ENOBUFS") -> None:
        self._queue.put_nowait(EventSourceError(message))

    async def start(self) -> None:
        self.starts += 1

    async def enumerate(self) -> list[DeviceEvent]:
        self.enumerations += 1
        return [dev.event("add") for dev in self.present.values()]

    async def events(self) -> AsyncIterator[DeviceEvent]:
        while True:
            item = await self._queue.get()
            if isinstance(item, EventSourceError):
                raise item
            yield item

    async def close(self) -> None:
        self.closes += 1


# --- fake sysfs / dev tree -------------------------------------------------------------------


class FakeSysfs:
    """``<root>/sys`` and ``<root>/dev`` laid out like the kernel's for USB V4L2 nodes."""

    def __init__(self, root: Path) -> None:
        self.sys_root = root / "sys"
        self.dev_root = root / "dev"
        (self.sys_root / "class" / "video4linux").mkdir(parents=True)
        self.dev_root.mkdir(parents=True)

    def usb_interface_dir(self, port: str) -> Path:
        return (
            self.sys_root
            / "devices"
            / "pci0000:00"
            / "0000:00:14.0"
            / "usb1"
            / f"1-{port}"
            / f"1-{port}:1.0"
        )

    def stable_key(self, port: str) -> str:
        return str(self.usb_interface_dir(port).relative_to(self.sys_root))

    def add_node(
        self,
        number: int,
        *,
        port: str,
        name: str = "HD Pro Webcam C920",
        index: int = 0,
        serial: str | None = None,
    ) -> None:
        iface = self.usb_interface_dir(port)
        node = iface / "video4linux" / f"video{number}"
        node.mkdir(parents=True, exist_ok=True)
        (node / "name").write_text(name + "\n")
        (node / "index").write_text(f"{index}\n")
        (node / "dev").write_text(f"81:{number}\n")
        (iface / "bInterfaceNumber").write_text("00\n")
        usb = iface.parent
        (usb / "idVendor").write_text("046d\n")
        (usb / "idProduct").write_text("082d\n")
        if serial:
            (usb / "serial").write_text(serial + "\n")
        link = self.sys_root / "class" / "video4linux" / f"video{number}"
        link.symlink_to(os.path.relpath(node, link.parent))
        (self.dev_root / f"video{number}").touch()

    def remove_node(self, number: int) -> None:
        link = self.sys_root / "class" / "video4linux" / f"video{number}"
        target = link.resolve()
        link.unlink()
        for child in target.iterdir():
            child.unlink()
        target.rmdir()
        (self.dev_root / f"video{number}").unlink()


# --- fake camera controls (VIDIOC_QUERY_EXT_CTRL / QUERYMENU / G,S_EXT_CTRLS) -----------------


@dataclass
class FakeControl:
    """One control of a fake camera, as its driver would describe it."""

    id: int
    type: int
    name: str
    minimum: int = 0
    maximum: int = 0
    step: int = 1
    default: int = 0
    flags: int = 0
    menu: dict[int, str | int] | None = None  # index → label (menus may have holes)
    value: int = 0
    gated_by: tuple[int, Callable[[int], bool]] | None = None  # inactive while pred(ctrl value)

    def __post_init__(self) -> None:
        self.value = self.default


def c920_controls() -> list[FakeControl]:
    """Roughly what a Logitech C920's uvcvideo driver reports (kernel 6.x names)."""
    def auto_exposure(v: int) -> bool:
        return v != 1  # anything but Manual Mode drives the exposure time

    def on(v: int) -> bool:
        return v != 0

    return [
        FakeControl(abi.CID_USER_CLASS, abi.CTRL_TYPE_CTRL_CLASS, "User Controls",
                    flags=abi.CTRL_FLAG_READ_ONLY | abi.CTRL_FLAG_WRITE_ONLY),
        FakeControl(abi.CID_BRIGHTNESS, abi.CTRL_TYPE_INTEGER, "Brightness", 0, 255, 1, 128),
        FakeControl(abi.CID_CONTRAST, abi.CTRL_TYPE_INTEGER, "Contrast", 0, 255, 1, 128),
        FakeControl(abi.CID_SATURATION, abi.CTRL_TYPE_INTEGER, "Saturation", 0, 255, 1, 128),
        FakeControl(abi.CID_AUTO_WHITE_BALANCE, abi.CTRL_TYPE_BOOLEAN,
                    "White Balance, Automatic", 0, 1, 1, 1),
        FakeControl(abi.CID_GAIN, abi.CTRL_TYPE_INTEGER, "Gain", 0, 255, 1, 0),
        FakeControl(abi.CID_POWER_LINE_FREQUENCY, abi.CTRL_TYPE_MENU, "Power Line Frequency",
                    0, 2, 1, 2, menu={0: "Disabled", 1: "50 Hz", 2: "60 Hz"}),
        FakeControl(abi.CID_WHITE_BALANCE_TEMPERATURE, abi.CTRL_TYPE_INTEGER,
                    "White Balance Temperature", 2000, 6500, 1, 4000,
                    gated_by=(abi.CID_AUTO_WHITE_BALANCE, on)),
        FakeControl(abi.CID_SHARPNESS, abi.CTRL_TYPE_INTEGER, "Sharpness", 0, 255, 1, 128),
        FakeControl(abi.CID_BACKLIGHT_COMPENSATION, abi.CTRL_TYPE_INTEGER,
                    "Backlight Compensation", 0, 1, 1, 0, flags=abi.CTRL_FLAG_DISABLED),
        FakeControl(abi.CID_CAMERA_CLASS, abi.CTRL_TYPE_CTRL_CLASS, "Camera Controls",
                    flags=abi.CTRL_FLAG_READ_ONLY | abi.CTRL_FLAG_WRITE_ONLY),
        FakeControl(abi.CID_EXPOSURE_AUTO, abi.CTRL_TYPE_MENU, "Auto Exposure", 0, 3, 1, 3,
                    menu={1: "Manual Mode", 3: "Aperture Priority Mode"}),
        FakeControl(abi.CID_EXPOSURE_ABSOLUTE, abi.CTRL_TYPE_INTEGER, "Exposure Time, Absolute",
                    3, 2047, 1, 250, gated_by=(abi.CID_EXPOSURE_AUTO, auto_exposure)),
        FakeControl(abi.CID_EXPOSURE_AUTO_PRIORITY, abi.CTRL_TYPE_BOOLEAN,
                    "Exposure, Dynamic Framerate", 0, 1, 1, 0),
        FakeControl(abi.CID_FOCUS_ABSOLUTE, abi.CTRL_TYPE_INTEGER, "Focus, Absolute",
                    0, 250, 5, 0, gated_by=(abi.CID_FOCUS_AUTO, on)),
        FakeControl(abi.CID_FOCUS_AUTO, abi.CTRL_TYPE_BOOLEAN, "Focus, Automatic Continuous",
                    0, 1, 1, 1),
        FakeControl(abi.CID_ZOOM_ABSOLUTE, abi.CTRL_TYPE_INTEGER, "Zoom, Absolute",
                    100, 500, 1, 100),
        FakeControl(abi.CID_PRIVACY, abi.CTRL_TYPE_BOOLEAN, "Privacy", 0, 1, 1, 0,
                    flags=abi.CTRL_FLAG_READ_ONLY),
        FakeControl(abi.CID_PAN_ABSOLUTE, abi.CTRL_TYPE_INTEGER64, "Pan, Absolute",
                    -36000, 36000, 3600, 0),
    ]


class FakeControlDevice:
    """The control protocol of one fake V4L2 node, answered like the kernel does.

    ``reset_on_stream``: control ids the "firmware" resets to their defaults when streaming
    starts (many UVC cameras do this with focus and exposure); :meth:`stream_on` is what
    FFmpeg's VIDIOC_STREAMON would trigger. ``writes`` records every successful S_EXT_CTRLS.
    """

    def __init__(self, controls: list[FakeControl] | None = None, *,
                 reset_on_stream: tuple[int, ...] = ()) -> None:
        self.controls = controls if controls is not None else c920_controls()
        self.reset_on_stream = reset_on_stream
        self.writes: list[tuple[int, int]] = []
        self.vanished = False
        self.streaming = 0

    def by_id(self, control_id: int) -> FakeControl | None:
        return next((c for c in self.controls if c.id == control_id), None)

    def value_of(self, name_or_id: str | int) -> int:
        for ctrl in self.controls:
            if ctrl.id == name_or_id or ctrl.name == name_or_id:
                return ctrl.value
        raise KeyError(name_or_id)

    def stream_on(self) -> None:
        self.streaming += 1
        for control_id in self.reset_on_stream:
            ctrl = self.by_id(control_id)
            if ctrl is not None:
                ctrl.value = ctrl.default

    def _flags(self, ctrl: FakeControl) -> int:
        flags = ctrl.flags
        if ctrl.gated_by is not None:
            gate = self.by_id(ctrl.gated_by[0])
            if gate is not None and ctrl.gated_by[1](gate.value):
                flags |= abi.CTRL_FLAG_INACTIVE
        return flags

    def handles(self, request: int) -> bool:
        return request in (abi.VIDIOC_QUERY_EXT_CTRL, abi.VIDIOC_QUERYMENU,
                           abi.VIDIOC_G_EXT_CTRLS, abi.VIDIOC_S_EXT_CTRLS)

    def __call__(self, fd: int, request: int, arg: bytes) -> bytes:
        if self.vanished:
            raise _os_error(errno.ENODEV)
        if request == abi.VIDIOC_QUERY_EXT_CTRL:
            return self._query(arg)
        if request == abi.VIDIOC_QUERYMENU:
            return self._querymenu(arg)
        if request in (abi.VIDIOC_G_EXT_CTRLS, abi.VIDIOC_S_EXT_CTRLS):
            self._ext(arg, write=request == abi.VIDIOC_S_EXT_CTRLS)
            return arg
        raise _os_error(errno.ENOTTY)

    def _query(self, arg: bytes) -> bytes:
        wanted = abi.decode_query_ext_ctrl(arg).id
        next_flags = abi.CTRL_FLAG_NEXT_CTRL | abi.CTRL_FLAG_NEXT_COMPOUND
        if wanted & next_flags:
            after = wanted & ~next_flags
            candidates = sorted((c for c in self.controls if c.id > after), key=lambda c: c.id)
            if not candidates:
                raise _os_error(errno.EINVAL)
            ctrl = candidates[0]
        else:
            found = self.by_id(wanted)
            if found is None:
                raise _os_error(errno.EINVAL)
            ctrl = found
        return abi.encode_query_ext_ctrl(abi.QueryExtCtrl(
            ctrl.id, ctrl.type, ctrl.name, ctrl.minimum, ctrl.maximum, ctrl.step, ctrl.default,
            self._flags(ctrl), 8 if ctrl.type == abi.CTRL_TYPE_INTEGER64 else 4, 1, 0))

    def _querymenu(self, arg: bytes) -> bytes:
        control_id, index, *_ = abi.QUERYMENU_STRUCT.unpack(arg)
        ctrl = self.by_id(control_id)
        if ctrl is None or ctrl.menu is None or index not in ctrl.menu:
            raise _os_error(errno.EINVAL)
        label = ctrl.menu[index]
        if isinstance(label, int):
            return abi.encode_querymenu(control_id, index, value=label)
        return abi.encode_querymenu(control_id, index, label)

    def _ext(self, arg: bytes, *, write: bool) -> None:
        which, count, _err, _fd, _res, pointer = abi.EXT_CONTROLS_STRUCT.unpack(arg)
        if which != abi.CTRL_WHICH_CUR_VAL or not 1 <= count <= 64:
            raise _os_error(errno.EINVAL)
        size = abi.EXT_CONTROL_STRUCT.size
        for i in range(count):
            address = pointer + i * size
            control_id, _sz, _r, value64 = abi.EXT_CONTROL_STRUCT.unpack(
                ctypes.string_at(address, size))
            ctrl = self.by_id(control_id)
            if ctrl is None or ctrl.type == abi.CTRL_TYPE_CTRL_CLASS:
                raise _os_error(errno.EINVAL)
            is64 = ctrl.type == abi.CTRL_TYPE_INTEGER64
            if write:
                value = value64 if is64 else ctypes.c_int32(value64 & 0xFFFFFFFF).value
                flags = self._flags(ctrl)
                if flags & abi.CTRL_FLAG_READ_ONLY:
                    raise _os_error(errno.EACCES)
                if flags & abi.CTRL_FLAG_INACTIVE:
                    raise _os_error(errno.EACCES)  # uvcvideo refuses writes to inactive ones
                if not ctrl.minimum <= value <= ctrl.maximum:
                    raise _os_error(errno.ERANGE)
                if ctrl.menu is not None and value not in ctrl.menu:
                    raise _os_error(errno.EINVAL)
                ctrl.value = value
                self.writes.append((control_id, value))
            else:
                if ctrl.flags & abi.CTRL_FLAG_WRITE_ONLY:
                    raise _os_error(errno.EACCES)
                packed = abi.EXT_CONTROL_STRUCT.pack(control_id, 0, 0, ctrl.value)
                ctypes.memmove(address, packed, size)


class FakeKernel:
    """Device nodes by path: ``open_fn`` / ``ioctl`` / ``close_fn`` for the daemon's V4L2 I/O
    seam (capability ioctls from a fixture, control ioctls from a :class:`FakeControlDevice`)."""

    def __init__(self) -> None:
        self.nodes: dict[str, FakeControlDevice] = {}
        self.probes: dict[str, FakeIoctl] = {}
        self._fds: dict[int, str] = {}
        self._next_fd = 1000
        self.opens = 0

    def add(self, path: str, device: FakeControlDevice, fixture: str | None = None) -> None:
        self.nodes[path] = device
        if fixture is not None:
            self.probes[path] = FakeIoctl(load_fixture(fixture))

    def remove(self, path: str) -> None:
        device = self.nodes.pop(path, None)
        if device is not None:
            device.vanished = True

    def open_fn(self, path: str) -> int:
        if path not in self.nodes:
            raise _os_error(errno.ENOENT)
        self.opens += 1
        self._next_fd += 1
        self._fds[self._next_fd] = path
        return self._next_fd

    def close_fn(self, fd: int) -> None:
        self._fds.pop(fd, None)

    def ioctl(self, fd: int, request: int, arg: bytes) -> bytes:
        path = self._fds.get(fd)
        if path is None:
            raise _os_error(errno.EBADF)
        device = self.nodes.get(path)
        if device is None:
            raise _os_error(errno.ENODEV)
        if device.handles(request):
            return device(fd, request, arg)
        probe = self.probes.get(path)
        if probe is None:
            raise _os_error(errno.ENOTTY)
        return probe(fd, request, arg)


class FakeCameraRig:
    """Fake USB cameras for a whole daemon: event source + prober (discovery seam) and a fake
    kernel for the control ioctls (``v4l2_io=rig.io``)."""

    def __init__(self, reset_on_stream: tuple[int, ...] = (abi.CID_FOCUS_AUTO,
                                                           abi.CID_FOCUS_ABSOLUTE)) -> None:
        self.prober = FakeProber()
        self.source = FakeEventSource(self.prober)
        self.kernel = FakeKernel()
        self.reset_on_stream = reset_on_stream

    def plug(self, node: int, fixture: str = "uvc_c920_h264", port: str = "1"
             ) -> FakeControlDevice:
        """A C920 on a USB port (same physical camera whatever the node number); a fresh
        device starts with the driver defaults, as a real replug does."""
        device = FakeControlDevice(reset_on_stream=self.reset_on_stream)
        capture, meta = uvc_webcam(node, port=port, fixture=fixture)
        self.kernel.add(capture.path, device)
        self.source.plug(capture, meta)
        return device

    def unplug(self, node: int) -> None:
        self.kernel.remove(f"/dev/video{node}")
        self.source.unplug(f"/dev/video{node}", f"/dev/video{node + 1}")

    @property
    def seams(self) -> dict[str, Any]:
        from camera_service.cameras.controls import V4L2IO

        io = V4L2IO(self.kernel.open_fn, self.kernel.ioctl, self.kernel.close_fn)
        return {"event_source": self.source, "prober": self.prober, "v4l2_io": io}
