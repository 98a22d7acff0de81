"""V4L2 camera controls over the extended-control ioctls (query with menus, get, set).

Pure parts (naming, validation, flag interpretation) are separate from the I/O, and the I/O
takes the ``ioctl`` callable as a parameter like :func:`~camera_service.cameras.v4l2.probe_device`,
so tests drive the real request/decode path against a fake kernel.

Values are read and written one control per ``VIDIOC_G/S_EXT_CTRLS`` call: the kernel applies
a multi-control set all-or-nothing, while the API reports each control's outcome (``applied`` /
``rejected``). Controls are written in dependency order (mode switches such as
``auto_exposure`` first, so ``exposure_time_absolute`` is active when its turn comes) and each
one's flags are read again right before it is written.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from camera_service.cameras.v4l2_abi import (
    CTRL_FLAG_DISABLED,
    CTRL_FLAG_GRABBED,
    CTRL_FLAG_INACTIVE,
    CTRL_FLAG_NAMES,
    CTRL_FLAG_NEXT_COMPOUND,
    CTRL_FLAG_NEXT_CTRL,
    CTRL_FLAG_READ_ONLY,
    CTRL_FLAG_WRITE_ONLY,
    CTRL_TYPE_BITMASK,
    CTRL_TYPE_BOOLEAN,
    CTRL_TYPE_BUTTON,
    CTRL_TYPE_CTRL_CLASS,
    CTRL_TYPE_INTEGER,
    CTRL_TYPE_INTEGER64,
    CTRL_TYPE_INTEGER_MENU,
    CTRL_TYPE_MENU,
    CTRL_TYPE_NAMES,
    CTRL_TYPE_STRING,
    CTRL_WHICH_CUR_VAL,
    EXT_CONTROL_STRUCT,
    EXT_CONTROLS_STRUCT,
    VIDIOC_G_EXT_CTRLS,
    VIDIOC_QUERY_EXT_CTRL,
    VIDIOC_QUERYMENU,
    VIDIOC_S_EXT_CTRLS,
    QueryExtCtrl,
    decode_query_ext_ctrl,
    decode_querymenu,
    encode_querymenu,
    query_ext_ctrl_request,
)

IoctlFn = Callable[[int, int, bytes], bytes]

MAX_CONTROLS = 256  # a UVC camera has about 20
MAX_MENU_ITEMS = 64
_SUPPORTED_TYPES = {
    CTRL_TYPE_INTEGER,
    CTRL_TYPE_BOOLEAN,
    CTRL_TYPE_MENU,
    CTRL_TYPE_BUTTON,
    CTRL_TYPE_INTEGER64,
    CTRL_TYPE_BITMASK,
    CTRL_TYPE_INTEGER_MENU,
    CTRL_TYPE_STRING,
}
_VALUE_TYPES = _SUPPORTED_TYPES - {CTRL_TYPE_BUTTON, CTRL_TYPE_STRING}
ControlValue = int | bool


class ControlIOError(Exception):
    """An ioctl on the device failed; ``reason`` is a short human sentence."""

    def __init__(self, reason: str, errno_code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.errno = errno_code


# --- pure ------------------------------------------------------------------------------------


def snake_name(raw: str) -> str:
    """The V4L2 name in snake_case: ``"Exposure Time, Absolute"`` → ``exposure_time_absolute``."""
    return re.sub(r"[^a-z0-9]+", "_", raw.lower()).strip("_")


@dataclass(frozen=True, slots=True)
class MenuItem:
    value: int  # the index to write
    label: str  # the driver's label, or the integer value of an integer menu


@dataclass(frozen=True, slots=True)
class Control:
    """One control as queried; ``value`` is filled by :func:`read_values`."""

    id: int
    type: int
    name: str
    minimum: int
    maximum: int
    step: int
    default: int
    flags: int
    menu: tuple[MenuItem, ...] = ()
    value: int | None = None

    @property
    def key(self) -> str:
        return snake_name(self.name)

    @property
    def type_name(self) -> str:
        return CTRL_TYPE_NAMES.get(self.type, "unknown")

    @property
    def flag_names(self) -> list[str]:
        return [name for bit, name in CTRL_FLAG_NAMES.items() if self.flags & bit]

    @property
    def has_value(self) -> bool:
        return self.type in _VALUE_TYPES and not self.flags & CTRL_FLAG_WRITE_ONLY

    def public_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.key,
            "label": self.name,
            "type": self.type_name,
            "min": self.minimum,
            "max": self.maximum,
            "step": self.step,
            "default": _public_value(self, self.default),
            "value": None if self.value is None else _public_value(self, self.value),
            "flags": self.flag_names,
        }
        if self.menu:
            out["menu"] = [{"value": item.value, "label": item.label} for item in self.menu]
        return out


def _public_value(ctrl: Control, value: int) -> ControlValue:
    return bool(value) if ctrl.type == CTRL_TYPE_BOOLEAN else value


def writable_reason(ctrl: Control) -> str | None:
    """Why the control cannot be written now (flags), or None."""
    if ctrl.flags & CTRL_FLAG_READ_ONLY:
        return "read-only control"
    if ctrl.flags & CTRL_FLAG_DISABLED:
        return "control is disabled"
    if ctrl.flags & CTRL_FLAG_GRABBED:
        return "control is grabbed by a running capture (try again when it stops)"
    if ctrl.flags & CTRL_FLAG_INACTIVE:
        return "control is inactive (an automatic mode controls it; switch that off first)"
    if ctrl.type == CTRL_TYPE_STRING:
        return "string controls are not supported"
    return None


def validate_value(ctrl: Control, value: object) -> tuple[int | None, str | None]:
    """``(raw value, None)`` when ``value`` may be written, else ``(None, reason)``.

    Integers must lie in [min, max] on the step grid; booleans accept true/false (or 0/1);
    menus accept an index the driver lists; a button accepts any value (it is pressed).
    """
    if ctrl.type == CTRL_TYPE_BUTTON:
        return 1, None
    if ctrl.type == CTRL_TYPE_BOOLEAN:
        if isinstance(value, bool):
            return int(value), None
        if isinstance(value, int) and value in (0, 1):
            return value, None
        return None, "expected true or false"
    if isinstance(value, bool) or not isinstance(value, int):
        return None, "expected an integer"
    if ctrl.type in (CTRL_TYPE_MENU, CTRL_TYPE_INTEGER_MENU):
        allowed = [item.value for item in ctrl.menu]
        if value not in allowed:
            return None, f"not a menu entry (allowed: {', '.join(map(str, allowed))})"
        return value, None
    if ctrl.type == CTRL_TYPE_BITMASK:
        if value < 0 or value & ~ctrl.maximum:
            return None, f"bits outside the mask 0x{ctrl.maximum:x}"
        return value, None
    if not ctrl.minimum <= value <= ctrl.maximum:
        return None, f"out of range ({ctrl.minimum}..{ctrl.maximum})"
    if ctrl.step > 1 and (value - ctrl.minimum) % ctrl.step:
        return None, f"not on the step grid (min {ctrl.minimum}, step {ctrl.step})"
    return value, None


def write_order(names: list[str], controls: Mapping[str, Control]) -> list[str]:
    """Mode switches first (booleans and menus, e.g. ``auto_exposure``,
    ``focus_automatic_continuous``), then the values they gate; stable otherwise."""

    def rank(name: str) -> int:
        ctrl = controls.get(name)
        if ctrl is not None and ctrl.type in (CTRL_TYPE_BOOLEAN, CTRL_TYPE_MENU):
            return 0
        return 1

    return sorted(names, key=rank)


# --- I/O -------------------------------------------------------------------------------------


def _errno_reason(exc: OSError) -> str:
    code = exc.errno or 0
    if code == errno.EACCES:
        return "the driver refused access (read-only or write-only control)"
    if code == errno.EBUSY:
        return "control is busy (grabbed by a running capture)"
    if code == errno.ERANGE:
        return "value out of the driver's range"
    if code == errno.EINVAL:
        return "the driver rejected the value"
    if code == errno.EIO:
        return "the camera did not answer (I/O error)"
    if code in (errno.ENODEV, errno.ENOENT, errno.ENXIO):
        return "camera vanished"
    return os.strerror(code) or "ioctl failed"


def _call(ioctl: IoctlFn, fd: int, request: int, arg: bytes) -> bytes:
    try:
        return ioctl(fd, request, arg)
    except OSError as exc:
        raise ControlIOError(_errno_reason(exc), exc.errno) from exc


def _menu(ioctl: IoctlFn, fd: int, query: QueryExtCtrl) -> tuple[MenuItem, ...]:
    integer_menu = query.type == CTRL_TYPE_INTEGER_MENU
    items: list[MenuItem] = []
    if query.maximum - query.minimum > MAX_MENU_ITEMS:
        return ()
    for index in range(query.minimum, query.maximum + 1):
        try:
            reply = ioctl(fd, VIDIOC_QUERYMENU, encode_querymenu(query.id, index))
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                continue  # a hole in the menu (the driver skips unsupported entries)
            raise ControlIOError(_errno_reason(exc), exc.errno) from exc
        got_index, label = decode_querymenu(reply, integer_menu=integer_menu)
        items.append(MenuItem(got_index, str(label)))
    return tuple(items)


def query_controls(fd: int, ioctl: IoctlFn) -> list[Control]:
    """Every control of the device (control-class headings and disabled ones skipped)."""
    out: list[Control] = []
    next_id = CTRL_FLAG_NEXT_CTRL | CTRL_FLAG_NEXT_COMPOUND
    for _ in range(MAX_CONTROLS):
        try:
            reply = ioctl(fd, VIDIOC_QUERY_EXT_CTRL, query_ext_ctrl_request(next_id))
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                break  # past the last control
            raise ControlIOError(_errno_reason(exc), exc.errno) from exc
        query = decode_query_ext_ctrl(reply)
        next_id = query.id | CTRL_FLAG_NEXT_CTRL | CTRL_FLAG_NEXT_COMPOUND
        if (
            query.type == CTRL_TYPE_CTRL_CLASS
            or query.type not in _SUPPORTED_TYPES
            or query.flags & CTRL_FLAG_DISABLED
            or query.nr_of_dims
        ):
            continue
        menu = (
            _menu(ioctl, fd, query)
            if query.type in (CTRL_TYPE_MENU, CTRL_TYPE_INTEGER_MENU)
            else ()
        )
        out.append(
            Control(
                query.id,
                query.type,
                query.name,
                query.minimum,
                query.maximum,
                query.step,
                query.default,
                query.flags,
                menu,
            )
        )
    return out


def query_one(fd: int, ioctl: IoctlFn, control: Control) -> Control:
    """The control with its current flags (they change when a mode switch is written)."""
    reply = _call(ioctl, fd, VIDIOC_QUERY_EXT_CTRL, query_ext_ctrl_request(control.id))
    query = decode_query_ext_ctrl(reply)
    return Control(
        control.id,
        control.type,
        control.name,
        query.minimum,
        query.maximum,
        query.step,
        query.default,
        query.flags,
        control.menu,
        control.value,
    )


@dataclass
class _ExtControls:
    """One ``v4l2_ext_control`` in C memory plus the ``v4l2_ext_controls`` that points at it."""

    control_id: int
    value: int = 0
    buffer: ctypes.Array[ctypes.c_char] = field(init=False)

    def __post_init__(self) -> None:
        self.buffer = ctypes.create_string_buffer(
            EXT_CONTROL_STRUCT.pack(self.control_id, 0, 0, self.value), EXT_CONTROL_STRUCT.size
        )

    def request(self) -> bytes:
        return EXT_CONTROLS_STRUCT.pack(
            CTRL_WHICH_CUR_VAL, 1, 0, 0, 0, ctypes.addressof(self.buffer)
        )

    def result(self, is_64: bool) -> int:
        _id, _size, _reserved, value64 = EXT_CONTROL_STRUCT.unpack(self.buffer.raw)
        if is_64:
            return int(value64)
        low = int(value64) & 0xFFFFFFFF
        return low - (1 << 32) if low & 0x80000000 else low


def read_value(fd: int, ioctl: IoctlFn, control: Control) -> int:
    ext = _ExtControls(control.id)
    _call(ioctl, fd, VIDIOC_G_EXT_CTRLS, ext.request())
    return ext.result(control.type == CTRL_TYPE_INTEGER64)


def read_values(fd: int, ioctl: IoctlFn, controls: list[Control]) -> list[Control]:
    """The controls with their current values (None where the driver cannot read one)."""
    out: list[Control] = []
    for ctrl in controls:
        value: int | None = None
        if ctrl.has_value:
            try:
                value = read_value(fd, ioctl, ctrl)
            except ControlIOError as exc:
                if exc.errno in (errno.ENODEV, errno.ENOENT, errno.ENXIO):
                    raise
        out.append(
            Control(
                ctrl.id,
                ctrl.type,
                ctrl.name,
                ctrl.minimum,
                ctrl.maximum,
                ctrl.step,
                ctrl.default,
                ctrl.flags,
                ctrl.menu,
                value,
            )
        )
    return out


def write_value(fd: int, ioctl: IoctlFn, control: Control, value: int) -> None:
    """Write one control; a 32-bit control gets its value in the union's low word."""
    if control.type != CTRL_TYPE_INTEGER64:
        value &= 0xFFFFFFFF
    ext = _ExtControls(control.id, value)
    _call(ioctl, fd, VIDIOC_S_EXT_CTRLS, ext.request())


@dataclass
class WriteReport:
    applied: dict[str, ControlValue] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)


def apply_values(
    fd: int, ioctl: IoctlFn, controls: list[Control], values: Mapping[str, object]
) -> WriteReport:
    """Validate and write ``values`` (by snake_case name) one by one, in dependency order;
    every control ends up in ``applied`` (the value read back) or ``rejected`` (why)."""
    by_name = {ctrl.key: ctrl for ctrl in controls}
    report = WriteReport()
    for name in write_order(list(values), by_name):
        ctrl = by_name.get(name)
        if ctrl is None:
            report.rejected[name] = "no such control on this camera"
            continue
        try:
            current = query_one(fd, ioctl, ctrl)
        except ControlIOError as exc:
            report.rejected[name] = exc.reason
            if exc.errno in (errno.ENODEV, errno.ENOENT, errno.ENXIO):
                raise
            continue
        reason = writable_reason(current)
        raw, invalid = validate_value(current, values[name])
        if reason is not None or invalid is not None or raw is None:
            report.rejected[name] = reason or invalid or "invalid value"
            continue
        try:
            write_value(fd, ioctl, current, raw)
            readback = read_value(fd, ioctl, current) if current.has_value else raw
        except ControlIOError as exc:
            report.rejected[name] = exc.reason
            if exc.errno in (errno.ENODEV, errno.ENOENT, errno.ENXIO):
                raise
            continue
        report.applied[name] = _public_value(current, readback)
    return report
