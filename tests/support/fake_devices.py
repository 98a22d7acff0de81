"""Fake V4L2 hardware for tests: fixture devices, a fake kernel ioctl, event source, prober,
and a fake sysfs/dev tree for the polling source.

Fixtures (``tests/data/v4l2/*.json``) describe what the kernel answers to QUERYCAP /
ENUM_FMT / ENUM_FRAMESIZES / ENUM_FRAMEINTERVALS for one node.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from camera_service.cameras.device_events import DeviceEvent, EventSourceError
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
