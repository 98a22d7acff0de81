"""V4L2 capability probing through raw ioctls (``fcntl.ioctl`` + ``struct``).

Why raw ioctls rather than the alternatives:

* **Dependency weight.** Four read-only ioctls (VIDIOC_QUERYCAP, VIDIOC_ENUM_FMT,
  VIDIOC_ENUM_FRAMESIZES, VIDIOC_ENUM_FRAMEINTERVALS) need only the standard library.
  ``linuxpy`` would add a sizeable package for the same four calls; ``v4l2-ctl`` needs the
  ``v4l-utils`` system package on every edge box and one process spawn per probe.
* **Robustness.** The ioctl structs are kernel ABI and never change layout, whereas
  ``v4l2-ctl`` text output changes between v4l-utils releases and locales. Every ioctl error is
  mapped to a precise reason (vanished, permission denied, not a V4L2 node, I/O error).
  Enumerations are bounded, so a buggy driver cannot loop us forever.
* **Testability.** Decoding (bytes → dataclasses) and aggregation (dataclasses →
  :class:`~camera_service.cameras.model.Capabilities`) are pure functions. :func:`probe_device`
  takes the ``ioctl``/``open`` callables as parameters, so tests replay fixture devices through
  the real request/decode path without hardware (see ``tests/support/fake_devices.py``).

A probe opens the node non-blocking and never starts streaming, so it works while another
process (FFmpeg) is reading the camera. Blocking calls run in a daemon thread per probe
(:class:`V4L2Prober`): a wedged USB device cannot block the event loop or the process exit.

"Is a camera" is decided only by the node's V4L2 device_caps: VIDEO_CAPTURE or
VIDEO_CAPTURE_MPLANE, and not a memory-to-memory/output device. Metadata nodes (UVC exposes
one next to each capture node, META_CAPTURE only) are therefore skipped whatever their number.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import struct
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from camera_service.cameras.model import Capabilities, parse_resolution

log = logging.getLogger(__name__)

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

_CAPTURE_BITS = CAP_VIDEO_CAPTURE | CAP_VIDEO_CAPTURE_MPLANE
_NOT_A_CAMERA_BITS = (
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

# Bounds: sane drivers stay far below; a buggy one must not make us loop forever.
MAX_FORMATS = 64
MAX_FRAME_SIZES = 256
MAX_FRAME_INTERVALS = 64
MAX_IOCTL_CALLS = 4096  # per probe; a C920 needs about 300
MAX_DIMENSION = 16384
MAX_FPS = 1000

COMMON_RESOLUTIONS: tuple[tuple[int, int], ...] = (
    (3840, 2160),
    (2592, 1944),
    (2560, 1440),
    (1920, 1080),
    (1600, 1200),
    (1280, 960),
    (1280, 720),
    (1024, 768),
    (800, 600),
    (640, 480),
    (640, 360),
    (320, 240),
)
COMMON_FPS: tuple[int, ...] = (5, 10, 15, 20, 24, 25, 30, 50, 60, 90, 120)


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


# --- pure interpretation ---------------------------------------------------------------------


def is_capture_caps(node_caps: int) -> bool:
    """A camera node: can capture video frames and is not a codec/output device."""
    return bool(node_caps & _CAPTURE_BITS) and not node_caps & _NOT_A_CAMERA_BITS


def capture_buf_type(node_caps: int) -> int:
    if node_caps & CAP_VIDEO_CAPTURE:
        return BUF_TYPE_VIDEO_CAPTURE
    return BUF_TYPE_VIDEO_CAPTURE_MPLANE


def cap_flag_names(mask: int) -> list[str]:
    return [name for bit, name in CAP_NAMES.items() if mask & bit]


def _fps(numerator: int, denominator: int) -> int | None:
    """Interval numerator/denominator seconds → whole frames per second (None if bogus)."""
    if numerator <= 0 or denominator <= 0:
        return None
    fps = round(denominator / numerator)
    return fps if 1 <= fps <= MAX_FPS else None


def fps_from_intervals(intervals: Iterable[FrameInterval]) -> list[int]:
    """Distinct whole frame rates, fastest first."""
    rates: set[int] = set()
    for ival in intervals:
        if ival.type == FRMIVAL_TYPE_DISCRETE:
            fps = _fps(ival.min_numerator, ival.min_denominator)
            if fps is not None:
                rates.add(fps)
            continue
        fastest = _fps(ival.min_numerator, ival.min_denominator)
        slowest = _fps(ival.max_numerator, ival.max_denominator)
        if fastest is None or slowest is None:
            continue
        low, high = min(slowest, fastest), max(slowest, fastest)
        rates.update(f for f in COMMON_FPS if low <= f <= high)
        rates.add(high)
    return sorted(rates, reverse=True)


def _size_ok(width: int, height: int) -> bool:
    return 0 < width <= MAX_DIMENSION and 0 < height <= MAX_DIMENSION


def _fits_step(value: int, minimum: int, maximum: int, step: int) -> bool:
    return minimum <= value <= maximum and (step <= 1 or (value - minimum) % step == 0)


def resolutions_from_size(size: FrameSize) -> list[tuple[int, int]]:
    """A discrete size, or common sizes (plus the maximum) within a stepwise range."""
    if size.type == FRMSIZE_TYPE_DISCRETE:
        return (
            [(size.min_width, size.min_height)] if _size_ok(size.min_width, size.min_height) else []
        )
    if not (
        _size_ok(size.max_width, size.max_height)
        and size.min_width <= size.max_width
        and size.min_height <= size.max_height
    ):
        return []
    out = [
        (w, h)
        for w, h in COMMON_RESOLUTIONS
        if _fits_step(w, size.min_width, size.max_width, size.step_width)
        and _fits_step(h, size.min_height, size.max_height, size.step_height)
    ]
    if (size.max_width, size.max_height) not in out:
        out.append((size.max_width, size.max_height))
    return out


def _pixels(resolution: str) -> tuple[int, int]:
    parsed = parse_resolution(resolution) or (0, 0)
    return parsed[0] * parsed[1], parsed[0]


def build_capabilities(info: RawDeviceInfo) -> Capabilities:
    """Interpret a probe: formats (fourcc), resolutions (largest first), fps per resolution."""
    cap = info.capability
    node_caps = cap.node_caps
    formats: list[str] = []
    fps_by_res: dict[str, set[int]] = {}
    for fmt in info.formats:
        if not is_valid_fourcc(fmt.pixelformat):
            continue
        fourcc = fourcc_to_str(fmt.pixelformat)
        if fourcc not in formats:
            formats.append(fourcc)
        for entry in fmt.sizes:
            rates = fps_from_intervals(entry.intervals)
            for width, height in resolutions_from_size(entry.size):
                fps_by_res.setdefault(f"{width}x{height}", set()).update(rates)
    resolutions = sorted(fps_by_res, key=_pixels, reverse=True)
    return Capabilities(
        formats=formats,
        resolutions=resolutions,
        fps_options={res: sorted(fps_by_res[res], reverse=True) for res in resolutions},
        card=cap.card,
        driver=cap.driver,
        bus_info=cap.bus_info,
        device_caps=node_caps,
        is_capture=is_capture_caps(node_caps),
    )


def choose_default_mode(
    caps: Capabilities,
    preferred_resolution: str = "1280x720",
    preferred_fps: int = 30,
) -> tuple[str, int]:
    """Pick the capture mode shown as the camera's resolution/fps.

    The preferred resolution when offered, else the largest one not above it (else the
    smallest offered); the preferred fps when offered there, else the fastest not above it,
    else the slowest offered. Without capability data the preference is returned as is.
    """
    if not caps.resolutions:
        return preferred_resolution, preferred_fps
    if preferred_resolution in caps.fps_options:
        resolution = preferred_resolution
    else:
        limit = _pixels(preferred_resolution)
        not_above = [r for r in caps.resolutions if _pixels(r) <= limit]
        resolution = not_above[0] if not_above else caps.resolutions[-1]
    rates = caps.fps_options.get(resolution, [])
    if not rates:
        return resolution, preferred_fps
    if preferred_fps in rates:
        return resolution, preferred_fps
    slower = [r for r in rates if r <= preferred_fps]
    return resolution, slower[0] if slower else rates[-1]


# --- I/O -------------------------------------------------------------------------------------

IoctlFn = Callable[[int, int, bytes], bytes]
OpenFn = Callable[[str], int]
CloseFn = Callable[[int], None]

_VANISHED_ERRNOS = {errno.ENOENT, errno.ENODEV, errno.ENXIO}


def _default_ioctl(fd: int, request: int, arg: bytes) -> bytes:
    return fcntl.ioctl(fd, request, arg)


def _default_open(path: str) -> int:
    return os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)


def _os_error(exc: OSError, what: str) -> ProbeError:
    if exc.errno in _VANISHED_ERRNOS:
        return DeviceVanishedError(f"device vanished during probe ({what})")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return ProbeError(f"permission denied ({what}); is the service user in group 'video'?")
    if exc.errno == errno.ENOTTY:
        return ProbeError(f"not a V4L2 device ({what})")
    return ProbeError(f"{what} failed: {os.strerror(exc.errno or 0)}")


class _Enumerator:
    """Runs the bounded enumeration ioctls on one open fd."""

    def __init__(self, fd: int, ioctl: IoctlFn) -> None:
        self._fd = fd
        self._ioctl = ioctl
        self.calls = 0

    def call(self, request: int, arg: bytes, what: str) -> bytes | None:
        """The reply, or None at the end of an enumeration (EINVAL) / unsupported (ENOTTY)."""
        self.calls += 1
        if self.calls > MAX_IOCTL_CALLS:
            raise ProbeError(f"driver enumeration does not end ({what})")
        try:
            return self._ioctl(self._fd, request, arg)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                return None
            if exc.errno == errno.ENOTTY and request != VIDIOC_QUERYCAP:
                return None
            raise _os_error(exc, what) from exc

    def formats(self, buf_type: int) -> list[FormatEntry]:
        out: list[FormatEntry] = []
        for index in range(MAX_FORMATS):
            reply = self.call(VIDIOC_ENUM_FMT, encode_fmtdesc(index, buf_type), "VIDIOC_ENUM_FMT")
            if reply is None:
                break
            _, fmt = decode_fmtdesc(reply)
            out.append(
                FormatEntry(
                    fmt.pixelformat, fmt.description, fmt.flags, self.sizes(fmt.pixelformat)
                )
            )
        return out

    def sizes(self, pixelformat: int) -> list[SizeEntry]:
        out: list[SizeEntry] = []
        for index in range(MAX_FRAME_SIZES):
            reply = self.call(
                VIDIOC_ENUM_FRAMESIZES, encode_frmsize(index, pixelformat), "VIDIOC_ENUM_FRAMESIZES"
            )
            if reply is None:
                break
            size = decode_frmsize(reply)
            intervals = self.intervals(pixelformat, size.max_width, size.max_height)
            out.append(SizeEntry(size, intervals))
            if size.type != FRMSIZE_TYPE_DISCRETE:
                break  # stepwise/continuous: index 0 is the only entry
        return out

    def intervals(self, pixelformat: int, width: int, height: int) -> list[FrameInterval]:
        out: list[FrameInterval] = []
        for index in range(MAX_FRAME_INTERVALS):
            reply = self.call(
                VIDIOC_ENUM_FRAMEINTERVALS,
                encode_frmival(index, pixelformat, width, height),
                "VIDIOC_ENUM_FRAMEINTERVALS",
            )
            if reply is None:
                break
            ival = decode_frmival(reply)
            out.append(ival)
            if ival.type != FRMIVAL_TYPE_DISCRETE:
                break
        return out


def probe_device(
    path: str,
    *,
    ioctl: IoctlFn = _default_ioctl,
    open_fn: OpenFn = _default_open,
    close_fn: CloseFn = os.close,
) -> RawDeviceInfo:
    """Query one node (blocking). Non-capture nodes are returned without formats.

    Raises :class:`DeviceVanishedError` or :class:`ProbeError`, never a bare ``OSError``.
    """
    try:
        fd = open_fn(path)
    except OSError as exc:
        raise _os_error(exc, "open") from exc
    try:
        enum = _Enumerator(fd, ioctl)
        reply = enum.call(
            VIDIOC_QUERYCAP, CAPABILITY_STRUCT.pack(*([b""] * 3), *([0] * 6)), "VIDIOC_QUERYCAP"
        )
        if reply is None:
            raise ProbeError("VIDIOC_QUERYCAP rejected")
        capability = decode_capability(reply)
        if not is_capture_caps(capability.node_caps):
            return RawDeviceInfo(capability)
        formats = enum.formats(capture_buf_type(capability.node_caps))
        return RawDeviceInfo(capability, formats)
    finally:
        try:
            close_fn(fd)
        except OSError:
            log.debug("closing %s failed", path, exc_info=True)


ProbeFn = Callable[[str], RawDeviceInfo]


class V4L2Prober:
    """Async prober: runs :func:`probe_device` in a daemon thread per call.

    The caller bounds the wait (``asyncio.wait_for``). A thread stuck in a wedged driver keeps
    running but is daemonic (does not hold up process exit); at most ``max_stuck`` such
    threads are tolerated before new probes fail fast.
    """

    def __init__(self, *, probe_fn: ProbeFn = probe_device, max_stuck: int = 4) -> None:
        self._probe_fn = probe_fn
        self._max_in_flight = max_stuck
        self._in_flight = 0
        self._lock = threading.Lock()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def probe(self, device_path: str) -> Capabilities:
        raw = await self.probe_raw(device_path)
        return build_capabilities(raw)

    async def probe_raw(self, device_path: str) -> RawDeviceInfo:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[RawDeviceInfo] = loop.create_future()
        with self._lock:
            if self._in_flight >= self._max_in_flight:
                raise ProbeError("too many probes stuck in the driver")
            self._in_flight += 1
        thread = threading.Thread(
            target=self._work,
            args=(loop, future, device_path),
            name=f"v4l2-probe:{device_path}",
            daemon=True,
        )
        thread.start()
        return await future

    def _work(
        self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[RawDeviceInfo], path: str
    ) -> None:
        try:
            result = self._probe_fn(path)
        except BaseException as exc:  # delivered to the awaiting coroutine
            _deliver(loop, future, None, exc)
        else:
            _deliver(loop, future, result, None)
        finally:
            with self._lock:
                self._in_flight -= 1


def _deliver(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[RawDeviceInfo],
    result: RawDeviceInfo | None,
    exc: BaseException | None,
) -> None:
    def settle() -> None:
        if future.done():
            return  # the waiter gave up (timeout / cancel)
        if exc is not None:
            future.set_exception(exc)
        elif result is not None:
            future.set_result(result)

    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:
        log.debug("event loop closed before a probe finished")
