"""V4L2 capability probing through raw ioctls (``fcntl.ioctl`` + ``struct``).

The kernel ABI (struct layouts, ioctl numbers, flags, encode/decode) is in
:mod:`~camera_service.cameras.v4l2_abi`, the control protocol in
:mod:`~camera_service.cameras.v4l2_controls`; this module interprets formats and probes.

Why raw ioctls rather than the alternatives:

* **Dependency weight.** The daemon needs eight ioctls (QUERYCAP, ENUM_FMT, ENUM_FRAMESIZES,
  ENUM_FRAMEINTERVALS for capabilities; QUERY_EXT_CTRL, QUERYMENU, G/S_EXT_CTRLS for
  controls), and only the standard library (``fcntl``, ``struct``, ``ctypes`` for the one
  pointer in ``v4l2_ext_controls``). ``linuxpy`` would bring a whole V4L2/input/GPIO binding
  for them, and its async story is its own event-loop integration around a device object
  that owns the fd, while the daemon needs short, bounded calls on a node FFmpeg may hold
  open, off the event loop in a daemon thread with a deadline. ``v4l2-ctl`` needs the
  ``v4l-utils`` system package on every edge box and one process spawn per call.
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
import threading
from collections.abc import Callable, Iterable

from camera_service.cameras.model import Capabilities, parse_resolution
from camera_service.cameras.v4l2_abi import (
    BUF_TYPE_VIDEO_CAPTURE,
    BUF_TYPE_VIDEO_CAPTURE_MPLANE,
    CAP_NAMES,
    CAP_VIDEO_CAPTURE,
    CAPABILITY_STRUCT,
    CAPTURE_BITS,
    FRMIVAL_TYPE_DISCRETE,
    FRMSIZE_TYPE_DISCRETE,
    NOT_A_CAMERA_BITS,
    VIDIOC_ENUM_FMT,
    VIDIOC_ENUM_FRAMEINTERVALS,
    VIDIOC_ENUM_FRAMESIZES,
    VIDIOC_QUERYCAP,
    DeviceVanishedError,
    FormatEntry,
    FrameInterval,
    FrameSize,
    ProbeError,
    RawDeviceInfo,
    SizeEntry,
    decode_capability,
    decode_fmtdesc,
    decode_frmival,
    decode_frmsize,
    encode_fmtdesc,
    encode_frmival,
    encode_frmsize,
    fourcc_to_str,
    is_valid_fourcc,
)

log = logging.getLogger(__name__)


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


# --- pure interpretation ---------------------------------------------------------------------


def is_capture_caps(node_caps: int) -> bool:
    """A camera node: can capture video frames and is not a codec/output device."""
    return bool(node_caps & CAPTURE_BITS) and not node_caps & NOT_A_CAMERA_BITS


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
    modes: dict[str, dict[str, set[int]]] = {}
    for fmt in info.formats:
        if not is_valid_fourcc(fmt.pixelformat):
            continue
        fourcc = fourcc_to_str(fmt.pixelformat)
        if fourcc not in formats:
            formats.append(fourcc)
        format_modes = modes.setdefault(fourcc, {})
        for entry in fmt.sizes:
            rates = fps_from_intervals(entry.intervals)
            for width, height in resolutions_from_size(entry.size):
                fps_by_res.setdefault(f"{width}x{height}", set()).update(rates)
                format_modes.setdefault(f"{width}x{height}", set()).update(rates)
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
        modes={
            fourcc: {
                res: sorted(rates, reverse=True)
                for res, rates in sorted(
                    by_res.items(), key=lambda kv: _pixels(kv[0]), reverse=True
                )
            }
            for fourcc, by_res in modes.items()
        },
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
