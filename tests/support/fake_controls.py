"""Fake V4L2 camera controls for tests: a control device answering VIDIOC_QUERY_EXT_CTRL /
QUERYMENU / G,S_EXT_CTRLS like the kernel (values in C memory through the ext-controls
pointer), a fake kernel of device nodes, and a rig of fake USB cameras for a whole daemon."""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from camera_service.cameras import v4l2_abi as abi
from tests.support.fake_devices import (
    FakeEventSource,
    FakeIoctl,
    FakeProber,
    load_fixture,
    uvc_webcam,
)


def _os_error(code: int) -> OSError:
    return OSError(code, os.strerror(code))


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
        FakeControl(
            abi.CID_USER_CLASS,
            abi.CTRL_TYPE_CTRL_CLASS,
            "User Controls",
            flags=abi.CTRL_FLAG_READ_ONLY | abi.CTRL_FLAG_WRITE_ONLY,
        ),
        FakeControl(abi.CID_BRIGHTNESS, abi.CTRL_TYPE_INTEGER, "Brightness", 0, 255, 1, 128),
        FakeControl(abi.CID_CONTRAST, abi.CTRL_TYPE_INTEGER, "Contrast", 0, 255, 1, 128),
        FakeControl(abi.CID_SATURATION, abi.CTRL_TYPE_INTEGER, "Saturation", 0, 255, 1, 128),
        FakeControl(
            abi.CID_AUTO_WHITE_BALANCE,
            abi.CTRL_TYPE_BOOLEAN,
            "White Balance, Automatic",
            0,
            1,
            1,
            1,
        ),
        FakeControl(abi.CID_GAIN, abi.CTRL_TYPE_INTEGER, "Gain", 0, 255, 1, 0),
        FakeControl(
            abi.CID_POWER_LINE_FREQUENCY,
            abi.CTRL_TYPE_MENU,
            "Power Line Frequency",
            0,
            2,
            1,
            2,
            menu={0: "Disabled", 1: "50 Hz", 2: "60 Hz"},
        ),
        FakeControl(
            abi.CID_WHITE_BALANCE_TEMPERATURE,
            abi.CTRL_TYPE_INTEGER,
            "White Balance Temperature",
            2000,
            6500,
            1,
            4000,
            gated_by=(abi.CID_AUTO_WHITE_BALANCE, on),
        ),
        FakeControl(abi.CID_SHARPNESS, abi.CTRL_TYPE_INTEGER, "Sharpness", 0, 255, 1, 128),
        FakeControl(
            abi.CID_BACKLIGHT_COMPENSATION,
            abi.CTRL_TYPE_INTEGER,
            "Backlight Compensation",
            0,
            1,
            1,
            0,
            flags=abi.CTRL_FLAG_DISABLED,
        ),
        FakeControl(
            abi.CID_CAMERA_CLASS,
            abi.CTRL_TYPE_CTRL_CLASS,
            "Camera Controls",
            flags=abi.CTRL_FLAG_READ_ONLY | abi.CTRL_FLAG_WRITE_ONLY,
        ),
        FakeControl(
            abi.CID_EXPOSURE_AUTO,
            abi.CTRL_TYPE_MENU,
            "Auto Exposure",
            0,
            3,
            1,
            3,
            menu={1: "Manual Mode", 3: "Aperture Priority Mode"},
        ),
        FakeControl(
            abi.CID_EXPOSURE_ABSOLUTE,
            abi.CTRL_TYPE_INTEGER,
            "Exposure Time, Absolute",
            3,
            2047,
            1,
            250,
            gated_by=(abi.CID_EXPOSURE_AUTO, auto_exposure),
        ),
        FakeControl(
            abi.CID_EXPOSURE_AUTO_PRIORITY,
            abi.CTRL_TYPE_BOOLEAN,
            "Exposure, Dynamic Framerate",
            0,
            1,
            1,
            0,
        ),
        FakeControl(
            abi.CID_FOCUS_ABSOLUTE,
            abi.CTRL_TYPE_INTEGER,
            "Focus, Absolute",
            0,
            250,
            5,
            0,
            gated_by=(abi.CID_FOCUS_AUTO, on),
        ),
        FakeControl(
            abi.CID_FOCUS_AUTO, abi.CTRL_TYPE_BOOLEAN, "Focus, Automatic Continuous", 0, 1, 1, 1
        ),
        FakeControl(
            abi.CID_ZOOM_ABSOLUTE, abi.CTRL_TYPE_INTEGER, "Zoom, Absolute", 100, 500, 1, 100
        ),
        FakeControl(
            abi.CID_PRIVACY,
            abi.CTRL_TYPE_BOOLEAN,
            "Privacy",
            0,
            1,
            1,
            0,
            flags=abi.CTRL_FLAG_READ_ONLY,
        ),
        FakeControl(
            abi.CID_PAN_ABSOLUTE, abi.CTRL_TYPE_INTEGER64, "Pan, Absolute", -36000, 36000, 3600, 0
        ),
    ]


class FakeControlDevice:
    """The control protocol of one fake V4L2 node, answered like the kernel does.

    ``reset_on_stream``: control ids the "firmware" resets to their defaults when streaming
    starts (many UVC cameras do this with focus and exposure); :meth:`stream_on` is what
    FFmpeg's VIDIOC_STREAMON would trigger. ``writes`` records every successful S_EXT_CTRLS.
    """

    def __init__(
        self, controls: list[FakeControl] | None = None, *, reset_on_stream: tuple[int, ...] = ()
    ) -> None:
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
        return request in (
            abi.VIDIOC_QUERY_EXT_CTRL,
            abi.VIDIOC_QUERYMENU,
            abi.VIDIOC_G_EXT_CTRLS,
            abi.VIDIOC_S_EXT_CTRLS,
        )

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
        return abi.encode_query_ext_ctrl(
            abi.QueryExtCtrl(
                ctrl.id,
                ctrl.type,
                ctrl.name,
                ctrl.minimum,
                ctrl.maximum,
                ctrl.step,
                ctrl.default,
                self._flags(ctrl),
                8 if ctrl.type == abi.CTRL_TYPE_INTEGER64 else 4,
                1,
                0,
            )
        )

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
                ctypes.string_at(address, size)
            )
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
                if ctrl.type != abi.CTRL_TYPE_BUTTON and not ctrl.minimum <= value <= ctrl.maximum:
                    raise _os_error(errno.ERANGE)  # (a button takes any value: it is pressed)
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

    def __init__(
        self, reset_on_stream: tuple[int, ...] = (abi.CID_FOCUS_AUTO, abi.CID_FOCUS_ABSOLUTE)
    ) -> None:
        self.prober = FakeProber()
        self.source = FakeEventSource(self.prober)
        self.kernel = FakeKernel()
        self.reset_on_stream = reset_on_stream

    def plug(self, node: int, fixture: str = "uvc_c920_h264", port: str = "1") -> FakeControlDevice:
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
