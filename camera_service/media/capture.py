"""Capture modes: which pixel format, size and rate a V4L2 camera is opened with, the FFmpeg
input options that request it, and whether the video can be copied instead of encoded.

Pure functions only (no I/O): the choice is made from the probed
:class:`~camera_service.cameras.model.Capabilities` (``modes``: format → size → rates).

``auto`` prefers compressed formats, H.264 first (copied, never re-encoded), then MJPEG
(decoded once per reader), at the requested size and rate; a raw format (YUYV, NV12 …) only
when no compressed one fits the size and rate. FFmpeg left to itself tends to pick raw YUYV,
which on USB 2 limits a 1080p camera to a few frames per second.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from camera_service.cameras.model import Capabilities, parse_resolution

PIXEL_FORMAT_AUTO = "auto"
#: Compressed formats in order of preference.
PREFERRED_FORMATS: tuple[str, ...] = ("H264", "MJPG", "JPEG")
COMPRESSED_FORMATS = frozenset(PREFERRED_FORMATS)

#: V4L2 fourcc → FFmpeg ``-input_format`` of the v4l2 demuxer.
FFMPEG_INPUT_FORMATS: dict[str, str] = {
    "H264": "h264",
    "MJPG": "mjpeg",
    "JPEG": "mjpeg",
    "YUYV": "yuyv422",
    "UYVY": "uyvy422",
    "YVYU": "yvyu422",
    "NV12": "nv12",
    "NV21": "nv21",
    "YU12": "yuv420p",
    "YV12": "yuv420p",
    "RGB3": "rgb24",
    "BGR3": "bgr24",
    "GREY": "gray",
    "Y16": "gray16le",
}


class CaptureSettingsError(ValueError):
    """A requested setting the camera cannot deliver; names the parameter and what it allows."""

    def __init__(self, param: str, rule: str, allowed: Sequence[str | int]) -> None:
        super().__init__(f"{param}: {rule}")
        self.param = param
        self.rule = rule
        self.allowed = list(allowed)


@dataclass(frozen=True, slots=True)
class CaptureRequest:
    """What the operator asked for (config or ``set_camera_settings``); None = no preference."""

    pixel_format: str = PIXEL_FORMAT_AUTO
    resolution: str | None = None
    fps: int | None = None

    def public_dict(self) -> dict[str, object]:
        return {"pixel_format": self.pixel_format, "resolution": self.resolution, "fps": self.fps}


@dataclass(frozen=True, slots=True)
class CaptureMode:
    """The mode chosen: ``pixel_format`` None when the camera reported no formats."""

    pixel_format: str | None
    resolution: str
    fps: int
    reason: str

    @property
    def is_h264(self) -> bool:
        return self.pixel_format == "H264"


def _pixels(resolution: str) -> int:
    parsed = parse_resolution(resolution) or (0, 0)
    return parsed[0] * parsed[1]


def _rank(fourcc: str) -> int:
    """Lower is better: H264, MJPG, JPEG, then raw formats in the driver's order."""
    return (
        PREFERRED_FORMATS.index(fourcc) if fourcc in COMPRESSED_FORMATS else len(PREFERRED_FORMATS)
    )


def _best_at(
    sizes: dict[str, list[int]], resolution: str, fps: int
) -> tuple[str, int, bool, bool] | None:
    """This format's closest mode to ``resolution``@``fps``: the size itself when offered,
    else the largest one not above it (else the smallest); the rate itself, else the
    fastest not above it (else the slowest). → (size, rate, exact size, exact rate)."""
    if not sizes:
        return None
    ordered = sorted(sizes, key=_pixels, reverse=True)
    if resolution in sizes:
        size = resolution
    else:
        limit = _pixels(resolution)
        not_above = [r for r in ordered if _pixels(r) <= limit]
        size = not_above[0] if not_above else ordered[-1]
    rates = sizes[size]
    if not rates:
        return size, fps, size == resolution, False
    if fps in rates:
        rate = fps
    else:
        slower = [r for r in rates if r <= fps]
        rate = slower[0] if slower else rates[-1]
    return size, rate, size == resolution, rate == fps


def choose_mode(
    caps: Capabilities, request: CaptureRequest, default_resolution: str, default_fps: int
) -> CaptureMode:
    """The capture mode for ``request`` (validated first: see :func:`validate_request`)."""
    validate_request(caps, request)
    resolution = request.resolution or default_resolution
    fps = request.fps or default_fps
    if not caps.modes:
        return CaptureMode(None, resolution, fps, "no capability data: FFmpeg picks the format")
    if request.pixel_format != PIXEL_FORMAT_AUTO:
        fourcc = request.pixel_format
        best = _best_at(caps.modes[fourcc], resolution, fps)
        assert best is not None  # validated
        return CaptureMode(fourcc, best[0], best[1], f"{fourcc} as configured")
    candidates = []
    for order, (fourcc, sizes) in enumerate(caps.modes.items()):
        best = _best_at(sizes, resolution, fps)
        if best is None:
            continue
        size, rate, exact_size, exact_rate = best
        # fits the size and rate > fits the size > compressed > larger > faster > driver order
        key = (
            not (exact_size and exact_rate),
            not exact_size,
            _rank(fourcc),
            -_pixels(size),
            -rate,
            order,
        )
        candidates.append((key, fourcc, size, rate))
    if not candidates:
        return CaptureMode(None, resolution, fps, "the camera lists no frame sizes")
    _key, fourcc, size, rate = min(candidates)
    wanted = f"{resolution}@{fps}"
    got = f"{size}@{rate}"
    if fourcc in COMPRESSED_FORMATS:
        why = f"compressed {fourcc} offers {got}" + ("" if got == wanted else f" ({wanted} asked)")
    else:
        why = f"no compressed format offers {wanted}; raw {fourcc} at {got}"
    return CaptureMode(fourcc, size, rate, f"auto: {why}")


def validate_request(caps: Capabilities, request: CaptureRequest) -> None:
    """Raise :class:`CaptureSettingsError` naming the allowed values when the camera cannot
    deliver an explicitly requested format, size or rate. Without capability data (the
    camera was never probed) every request is accepted."""
    if not caps.modes:
        return
    fourcc = request.pixel_format
    if fourcc != PIXEL_FORMAT_AUTO and fourcc not in caps.modes:
        raise CaptureSettingsError(
            "pixel_format", "not offered by the camera", [PIXEL_FORMAT_AUTO, *caps.modes]
        )
    formats = [fourcc] if fourcc != PIXEL_FORMAT_AUTO else list(caps.modes)
    if request.resolution is not None:
        offered = _sizes(caps, formats)
        if request.resolution not in offered:
            scope = f"with {fourcc}" if fourcc != PIXEL_FORMAT_AUTO else "by the camera"
            raise CaptureSettingsError("resolution", f"not offered {scope}", offered)
    if request.fps is not None:
        sizes = [request.resolution] if request.resolution else None
        rates = _rates(caps, formats, sizes)
        if rates and request.fps not in rates:
            raise CaptureSettingsError("fps", "not offered at that size", rates)


def _sizes(caps: Capabilities, formats: list[str]) -> list[str]:
    sizes = {size for f in formats for size in caps.modes.get(f, {})}
    return sorted(sizes, key=_pixels, reverse=True)


def _rates(caps: Capabilities, formats: list[str], sizes: list[str] | None) -> list[int]:
    rates: set[int] = set()
    for f in formats:
        for size, fps in caps.modes.get(f, {}).items():
            if sizes is None or size in sizes:
                rates.update(fps)
    return sorted(rates, reverse=True)


def v4l2_input_options(
    pixel_format: str | None, resolution: str | None, fps: int | None
) -> list[str]:
    """FFmpeg v4l2 demuxer options (before ``-i``) that open the camera in this mode."""
    args = ["-f", "v4l2", "-thread_queue_size", "512"]
    if pixel_format is not None:
        args += ["-input_format", FFMPEG_INPUT_FORMATS.get(pixel_format, pixel_format.lower())]
    if resolution:
        args += ["-video_size", resolution]
    if fps:
        args += ["-framerate", str(fps)]
    return args


def warmup_filter(frames: int) -> list[str]:
    """``-vf`` that drops the first ``frames`` frames (auto-exposure settles meanwhile)."""
    if frames <= 0:
        return []
    return ["-vf", f"select=gte(n\\,{frames})"]
