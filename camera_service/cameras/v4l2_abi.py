"""V4L2 kernel ABI: ioctl request numbers, struct layouts and flags (``linux/videodev2.h``),
and pure encode/decode of the structs (bytes <-> dataclasses), without any I/O.

The layouts are checked against the kernel's own header by ``tests/unit/test_v4l2_abi.py``,
which compiles a small C program printing ``sizeof``/``offsetof``/ioctl numbers.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

# --- ioctl request numbers (asm-generic/ioctl.h) -------------------------------------------

_IOC_NRSHIFT = 0
_IOC_TYPESHIFT = 8
_IOC_SIZESHIFT = 16
_IOC_DIRSHIFT = 30
_IOC_WRITE = 1
_IOC_READ = 2


def _ioc(direction: int, type_char: str, nr: int, size: int) -> int:
    return (
        (direction << _IOC_DIRSHIFT)
        | (ord(type_char) << _IOC_TYPESHIFT)
        | (nr << _IOC_NRSHIFT)
        | (size << _IOC_SIZESHIFT)
    )


# struct v4l2_capability: driver[16] card[32] bus_info[32] version capabilities device_caps
# reserved[3]
CAPABILITY_STRUCT = struct.Struct("=16s32s32sIII3I")
# struct v4l2_fmtdesc: index type flags description[32] pixelformat mbus_code reserved[3]
FMTDESC_STRUCT = struct.Struct("=III32sII3I")
# struct v4l2_frmsizeenum: index pixel_format type union{discrete{w,h}|stepwise{6}} reserved[2]
FRMSIZE_STRUCT = struct.Struct("=III6I2I")
# struct v4l2_frmivalenum: index pixel_format width height type
# union{fract | stepwise{min,max,step fracts}} reserved[2]
FRMIVAL_STRUCT = struct.Struct("=IIIII6I2I")

VIDIOC_QUERYCAP = _ioc(_IOC_READ, "V", 0, CAPABILITY_STRUCT.size)
VIDIOC_ENUM_FMT = _ioc(_IOC_READ | _IOC_WRITE, "V", 2, FMTDESC_STRUCT.size)
VIDIOC_ENUM_FRAMESIZES = _ioc(_IOC_READ | _IOC_WRITE, "V", 74, FRMSIZE_STRUCT.size)
VIDIOC_ENUM_FRAMEINTERVALS = _ioc(_IOC_READ | _IOC_WRITE, "V", 75, FRMIVAL_STRUCT.size)

# --- capability flags (videodev2.h) ----------------------------------------------------------

CAP_VIDEO_CAPTURE = 0x00000001
CAP_VIDEO_OUTPUT = 0x00000002
CAP_VIDEO_OVERLAY = 0x00000004
CAP_VBI_CAPTURE = 0x00000010
CAP_VIDEO_CAPTURE_MPLANE = 0x00001000
CAP_VIDEO_OUTPUT_MPLANE = 0x00002000
CAP_VIDEO_M2M_MPLANE = 0x00004000
CAP_VIDEO_M2M = 0x00008000
CAP_TUNER = 0x00010000
CAP_AUDIO = 0x00020000
CAP_RADIO = 0x00040000
CAP_SDR_CAPTURE = 0x00100000
CAP_EXT_PIX_FORMAT = 0x00200000
CAP_META_CAPTURE = 0x00800000
CAP_READWRITE = 0x01000000
CAP_STREAMING = 0x04000000
CAP_META_OUTPUT = 0x08000000
CAP_TOUCH = 0x10000000
CAP_IO_MC = 0x20000000
CAP_DEVICE_CAPS = 0x80000000

CAP_NAMES: dict[int, str] = {
    CAP_VIDEO_CAPTURE: "VIDEO_CAPTURE",
    CAP_VIDEO_OUTPUT: "VIDEO_OUTPUT",
    CAP_VIDEO_OVERLAY: "VIDEO_OVERLAY",
    CAP_VBI_CAPTURE: "VBI_CAPTURE",
    CAP_VIDEO_CAPTURE_MPLANE: "VIDEO_CAPTURE_MPLANE",
    CAP_VIDEO_OUTPUT_MPLANE: "VIDEO_OUTPUT_MPLANE",
    CAP_VIDEO_M2M_MPLANE: "VIDEO_M2M_MPLANE",
    CAP_VIDEO_M2M: "VIDEO_M2M",
    CAP_TUNER: "TUNER",
    CAP_AUDIO: "AUDIO",
    CAP_RADIO: "RADIO",
    CAP_SDR_CAPTURE: "SDR_CAPTURE",
    CAP_EXT_PIX_FORMAT: "EXT_PIX_FORMAT",
    CAP_META_CAPTURE: "META_CAPTURE",
    CAP_READWRITE: "READWRITE",
    CAP_STREAMING: "STREAMING",
    CAP_META_OUTPUT: "META_OUTPUT",
    CAP_TOUCH: "TOUCH",
    CAP_IO_MC: "IO_MC",
    CAP_DEVICE_CAPS: "DEVICE_CAPS",
}

CAPTURE_BITS = CAP_VIDEO_CAPTURE | CAP_VIDEO_CAPTURE_MPLANE
NOT_A_CAMERA_BITS = (
    CAP_VIDEO_M2M | CAP_VIDEO_M2M_MPLANE | CAP_VIDEO_OUTPUT | CAP_VIDEO_OUTPUT_MPLANE
)

BUF_TYPE_VIDEO_CAPTURE = 1
BUF_TYPE_VIDEO_CAPTURE_MPLANE = 9

FMT_FLAG_COMPRESSED = 0x0001

FRMSIZE_TYPE_DISCRETE = 1
FRMSIZE_TYPE_CONTINUOUS = 2
FRMSIZE_TYPE_STEPWISE = 3
FRMIVAL_TYPE_DISCRETE = 1
FRMIVAL_TYPE_CONTINUOUS = 2
FRMIVAL_TYPE_STEPWISE = 3

# --- errors ----------------------------------------------------------------------------------


class ProbeError(Exception):
    """The device could not be probed; ``reason`` is a short human sentence."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DeviceVanishedError(ProbeError):
    """The node disappeared (unplugged) while being probed."""


# --- raw structures --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceCapability:
    """Decoded ``struct v4l2_capability``."""

    driver: str
    card: str
    bus_info: str
    version: int
    capabilities: int
    device_caps: int

    @property
    def node_caps(self) -> int:
        """Capabilities of this node: device_caps when the driver reports them (DEVICE_CAPS)."""
        if self.capabilities & CAP_DEVICE_CAPS:
            return self.device_caps
        return self.capabilities


@dataclass(frozen=True, slots=True)
class FrameSize:
    """A ``v4l2_frmsizeenum`` entry; discrete sizes have min == max and step 1."""

    type: int
    min_width: int
    max_width: int
    step_width: int
    min_height: int
    max_height: int
    step_height: int

    @classmethod
    def discrete(cls, width: int, height: int) -> FrameSize:
        return cls(FRMSIZE_TYPE_DISCRETE, width, width, 1, height, height, 1)


@dataclass(frozen=True, slots=True)
class FrameInterval:
    """A ``v4l2_frmivalenum`` entry as fractions of a second (discrete: min == max)."""

    type: int
    min_numerator: int
    min_denominator: int
    max_numerator: int
    max_denominator: int

    @classmethod
    def discrete(cls, numerator: int, denominator: int) -> FrameInterval:
        return cls(FRMIVAL_TYPE_DISCRETE, numerator, denominator, numerator, denominator)


@dataclass(frozen=True, slots=True)
class SizeEntry:
    size: FrameSize
    intervals: list[FrameInterval] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class FormatEntry:
    pixelformat: int
    description: str
    flags: int = 0
    sizes: list[SizeEntry] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RawDeviceInfo:
    """Everything a probe learned from one node, before interpretation."""

    capability: DeviceCapability
    formats: list[FormatEntry] = field(default_factory=list)


# --- pure decoding ---------------------------------------------------------------------------


def _cstr(raw: bytes) -> str:
    """NUL-terminated C string → str; undecodable bytes are replaced, controls dropped."""
    text = raw.split(b"\0", 1)[0].decode("utf-8", errors="replace")
    return "".join(ch for ch in text if ch.isprintable()).strip()


def _check_len(buf: bytes, st: struct.Struct, what: str) -> None:
    if len(buf) != st.size:
        raise ProbeError(f"malformed {what} reply ({len(buf)} bytes, expected {st.size})")


def fourcc_to_str(code: int) -> str:
    """``0x47504A4D`` → ``"MJPG"``; trailing spaces are kept out (``"GREY"``, ``"Y8  "``)."""
    return "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4)).rstrip(" \0")


def str_to_fourcc(text: str) -> int:
    padded = text.ljust(4)[:4]
    return sum(ord(ch) << (8 * i) for i, ch in enumerate(padded))


def is_valid_fourcc(code: int) -> bool:
    chars = [(code >> (8 * i)) & 0xFF for i in range(4)]
    return chars[0] != 0x20 and all(0x20 <= c < 0x7F for c in chars)


def decode_capability(buf: bytes) -> DeviceCapability:
    _check_len(buf, CAPABILITY_STRUCT, "VIDIOC_QUERYCAP")
    driver, card, bus_info, version, caps, device_caps, *_ = CAPABILITY_STRUCT.unpack(buf)
    return DeviceCapability(
        driver=_cstr(driver),
        card=_cstr(card),
        bus_info=_cstr(bus_info),
        version=version,
        capabilities=caps,
        device_caps=device_caps,
    )


def encode_capability(cap: DeviceCapability) -> bytes:
    """Inverse of :func:`decode_capability` (used by test doubles of the kernel)."""
    return CAPABILITY_STRUCT.pack(
        cap.driver.encode(),
        cap.card.encode(),
        cap.bus_info.encode(),
        cap.version,
        cap.capabilities,
        cap.device_caps,
        0,
        0,
        0,
    )


def encode_fmtdesc(
    index: int, buf_type: int, flags: int = 0, description: str = "", pixelformat: int = 0
) -> bytes:
    return FMTDESC_STRUCT.pack(
        index, buf_type, flags, description.encode(), pixelformat, 0, 0, 0, 0
    )


def decode_fmtdesc(buf: bytes) -> tuple[int, FormatEntry]:
    """→ (index, format without sizes)."""
    _check_len(buf, FMTDESC_STRUCT, "VIDIOC_ENUM_FMT")
    index, _type, flags, description, pixelformat, *_ = FMTDESC_STRUCT.unpack(buf)
    return index, FormatEntry(pixelformat=pixelformat, description=_cstr(description), flags=flags)


def encode_frmsize(index: int, pixelformat: int, size: FrameSize | None = None) -> bytes:
    if size is None:
        return FRMSIZE_STRUCT.pack(index, pixelformat, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    if size.type == FRMSIZE_TYPE_DISCRETE:
        union = (size.min_width, size.min_height, 0, 0, 0, 0)
    else:
        union = (
            size.min_width,
            size.max_width,
            size.step_width,
            size.min_height,
            size.max_height,
            size.step_height,
        )
    return FRMSIZE_STRUCT.pack(index, pixelformat, size.type, *union, 0, 0)


def decode_frmsize(buf: bytes) -> FrameSize:
    _check_len(buf, FRMSIZE_STRUCT, "VIDIOC_ENUM_FRAMESIZES")
    _index, _fmt, size_type, u0, u1, u2, u3, u4, u5, _r0, _r1 = FRMSIZE_STRUCT.unpack(buf)
    if size_type == FRMSIZE_TYPE_DISCRETE:
        return FrameSize.discrete(u0, u1)
    return FrameSize(size_type, u0, u1, u2, u3, u4, u5)


def encode_frmival(
    index: int, pixelformat: int, width: int, height: int, interval: FrameInterval | None = None
) -> bytes:
    if interval is None:
        return FRMIVAL_STRUCT.pack(index, pixelformat, width, height, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    if interval.type == FRMIVAL_TYPE_DISCRETE:
        union = (interval.min_numerator, interval.min_denominator, 0, 0, 0, 0)
    else:
        union = (
            interval.min_numerator,
            interval.min_denominator,
            interval.max_numerator,
            interval.max_denominator,
            1,
            1,
        )
    return FRMIVAL_STRUCT.pack(index, pixelformat, width, height, interval.type, *union, 0, 0)


def decode_frmival(buf: bytes) -> FrameInterval:
    _check_len(buf, FRMIVAL_STRUCT, "VIDIOC_ENUM_FRAMEINTERVALS")
    fields = FRMIVAL_STRUCT.unpack(buf)
    ival_type = fields[4]
    u = fields[5:11]
    if ival_type == FRMIVAL_TYPE_DISCRETE:
        return FrameInterval.discrete(u[0], u[1])
    return FrameInterval(ival_type, u[0], u[1], u[2], u[3])


# --- controls (videodev2.h: extended controls) ------------------------------------------------

# struct v4l2_query_ext_ctrl: id type name[32] minimum(s64) maximum(s64) step(u64)
# default_value(s64) flags elem_size elems nr_of_dims dims[4] reserved[32]
QUERY_EXT_CTRL_STRUCT = struct.Struct("=II32sqqQqIIII4I32I")
# struct v4l2_querymenu (packed): id index union{name[32] | s64 value} reserved
QUERYMENU_STRUCT = struct.Struct("=II32sI")
QUERYMENU_VALUE_STRUCT = struct.Struct("=IIq24xI")
# struct v4l2_ext_control (packed): id size reserved2[1] union{s32 value | s64 value64 | ptr}
EXT_CONTROL_STRUCT = struct.Struct("=IIIq")
# struct v4l2_ext_controls: which count error_idx request_fd reserved[1] controls (pointer);
# native alignment puts the padding before the pointer exactly as the C compiler does.
EXT_CONTROLS_STRUCT = struct.Struct("@IIIiIP")

VIDIOC_QUERYMENU = _ioc(_IOC_READ | _IOC_WRITE, "V", 37, QUERYMENU_STRUCT.size)
VIDIOC_G_EXT_CTRLS = _ioc(_IOC_READ | _IOC_WRITE, "V", 71, EXT_CONTROLS_STRUCT.size)
VIDIOC_S_EXT_CTRLS = _ioc(_IOC_READ | _IOC_WRITE, "V", 72, EXT_CONTROLS_STRUCT.size)
VIDIOC_TRY_EXT_CTRLS = _ioc(_IOC_READ | _IOC_WRITE, "V", 73, EXT_CONTROLS_STRUCT.size)
VIDIOC_QUERY_EXT_CTRL = _ioc(_IOC_READ | _IOC_WRITE, "V", 103, QUERY_EXT_CTRL_STRUCT.size)

CTRL_TYPE_INTEGER = 1
CTRL_TYPE_BOOLEAN = 2
CTRL_TYPE_MENU = 3
CTRL_TYPE_BUTTON = 4
CTRL_TYPE_INTEGER64 = 5
CTRL_TYPE_CTRL_CLASS = 6
CTRL_TYPE_STRING = 7
CTRL_TYPE_BITMASK = 8
CTRL_TYPE_INTEGER_MENU = 9

CTRL_TYPE_NAMES: dict[int, str] = {
    CTRL_TYPE_INTEGER: "integer",
    CTRL_TYPE_BOOLEAN: "boolean",
    CTRL_TYPE_MENU: "menu",
    CTRL_TYPE_BUTTON: "button",
    CTRL_TYPE_INTEGER64: "integer64",
    CTRL_TYPE_STRING: "string",
    CTRL_TYPE_BITMASK: "bitmask",
    CTRL_TYPE_INTEGER_MENU: "integer_menu",
}

CTRL_FLAG_DISABLED = 0x0001
CTRL_FLAG_GRABBED = 0x0002
CTRL_FLAG_READ_ONLY = 0x0004
CTRL_FLAG_UPDATE = 0x0008
CTRL_FLAG_INACTIVE = 0x0010
CTRL_FLAG_SLIDER = 0x0020
CTRL_FLAG_WRITE_ONLY = 0x0040
CTRL_FLAG_VOLATILE = 0x0080
CTRL_FLAG_HAS_PAYLOAD = 0x0100
CTRL_FLAG_EXECUTE_ON_WRITE = 0x0200
CTRL_FLAG_MODIFY_LAYOUT = 0x0400
CTRL_FLAG_NEXT_CTRL = 0x80000000
CTRL_FLAG_NEXT_COMPOUND = 0x40000000

CTRL_FLAG_NAMES: dict[int, str] = {
    CTRL_FLAG_DISABLED: "disabled",
    CTRL_FLAG_GRABBED: "grabbed",
    CTRL_FLAG_READ_ONLY: "read_only",
    CTRL_FLAG_UPDATE: "update",
    CTRL_FLAG_INACTIVE: "inactive",
    CTRL_FLAG_SLIDER: "slider",
    CTRL_FLAG_WRITE_ONLY: "write_only",
    CTRL_FLAG_VOLATILE: "volatile",
    CTRL_FLAG_EXECUTE_ON_WRITE: "execute_on_write",
    CTRL_FLAG_MODIFY_LAYOUT: "modify_layout",
}

CTRL_WHICH_CUR_VAL = 0
CTRL_WHICH_DEF_VAL = 0x0F000000

# Control ids a UVC camera commonly has (V4L2_CID_*), used by the test doubles.
CID_USER_CLASS = 0x00980001
CID_BRIGHTNESS = 0x00980900
CID_CONTRAST = 0x00980901
CID_SATURATION = 0x00980902
CID_AUTO_WHITE_BALANCE = 0x0098090C
CID_GAIN = 0x00980913
CID_POWER_LINE_FREQUENCY = 0x00980918
CID_WHITE_BALANCE_TEMPERATURE = 0x0098091A
CID_SHARPNESS = 0x0098091B
CID_BACKLIGHT_COMPENSATION = 0x0098091C
CID_CAMERA_CLASS = 0x009A0001
CID_EXPOSURE_AUTO = 0x009A0901
CID_EXPOSURE_ABSOLUTE = 0x009A0902
CID_EXPOSURE_AUTO_PRIORITY = 0x009A0903
CID_PAN_RESET = 0x009A0906
CID_PAN_ABSOLUTE = 0x009A0908
CID_PRIVACY = 0x009A0910
CID_FOCUS_ABSOLUTE = 0x009A090A
CID_FOCUS_AUTO = 0x009A090C
CID_ZOOM_ABSOLUTE = 0x009A090D


@dataclass(frozen=True, slots=True)
class QueryExtCtrl:
    """Decoded ``struct v4l2_query_ext_ctrl`` (the fields the daemon uses)."""

    id: int
    type: int
    name: str
    minimum: int
    maximum: int
    step: int
    default: int
    flags: int
    elem_size: int = 4
    elems: int = 1
    nr_of_dims: int = 0


def encode_query_ext_ctrl(ctrl: QueryExtCtrl) -> bytes:
    return QUERY_EXT_CTRL_STRUCT.pack(
        ctrl.id,
        ctrl.type,
        ctrl.name.encode()[:31],
        ctrl.minimum,
        ctrl.maximum,
        ctrl.step,
        ctrl.default,
        ctrl.flags,
        ctrl.elem_size,
        ctrl.elems,
        ctrl.nr_of_dims,
        *([0] * 4),
        *([0] * 32),
    )


def query_ext_ctrl_request(control_id: int) -> bytes:
    return encode_query_ext_ctrl(QueryExtCtrl(control_id, 0, "", 0, 0, 0, 0, 0, 0, 0, 0))


def decode_query_ext_ctrl(buf: bytes) -> QueryExtCtrl:
    _check_len(buf, QUERY_EXT_CTRL_STRUCT, "VIDIOC_QUERY_EXT_CTRL")
    fields = QUERY_EXT_CTRL_STRUCT.unpack(buf)
    return QueryExtCtrl(
        id=fields[0],
        type=fields[1],
        name=_cstr(fields[2]),
        minimum=fields[3],
        maximum=fields[4],
        step=fields[5],
        default=fields[6],
        flags=fields[7],
        elem_size=fields[8],
        elems=fields[9],
        nr_of_dims=fields[10],
    )


def encode_querymenu(
    control_id: int, index: int, label: str = "", value: int | None = None
) -> bytes:
    if value is not None:
        return QUERYMENU_VALUE_STRUCT.pack(control_id, index, value, 0)
    return QUERYMENU_STRUCT.pack(control_id, index, label.encode()[:31], 0)


def decode_querymenu(buf: bytes, *, integer_menu: bool) -> tuple[int, str | int]:
    """→ (index, label) for a menu, (index, value) for an integer menu."""
    _check_len(buf, QUERYMENU_STRUCT, "VIDIOC_QUERYMENU")
    if integer_menu:
        _id, index, value, _reserved = QUERYMENU_VALUE_STRUCT.unpack(buf)
        return index, int(value)
    _id, index, name, _reserved = QUERYMENU_STRUCT.unpack(buf)
    return index, _cstr(name)
