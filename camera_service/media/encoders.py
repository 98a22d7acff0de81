"""H.264 encoders: which one the daemon uses when a camera's video must be encoded.

Hardware encoders (``h264_v4l2m2m`` on Raspberry Pi-class boards, ``h264_vaapi`` on Intel/AMD,
``h264_qsv``, ``h264_nvenc``) are probed once at start with a short test encode of a generated
picture: FFmpeg lists them whether or not the hardware is there, so only a real encode tells.
The first that works is used, else ``libx264``. ``ffmpeg.video_encoder`` names one explicitly
(no probe) or is ``auto``.

An H.264 camera is never encoded: its video is copied (``-c:v copy``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from camera_service.media.errors import MediaError
from camera_service.media.ffmpeg import ProcessSupervisor

log = logging.getLogger(__name__)

SOFTWARE_ENCODER = "libx264"
HARDWARE_ENCODERS: tuple[str, ...] = ("h264_v4l2m2m", "h264_vaapi", "h264_qsv", "h264_nvenc")
KNOWN_ENCODERS: tuple[str, ...] = (*HARDWARE_ENCODERS, SOFTWARE_ENCODER)
VAAPI_DEVICE = "/dev/dri/renderD128"
PROBE_TIMEOUT = 10.0
PROBE_FRAMES = 5


@dataclass(frozen=True, slots=True)
class EncodeOptions:
    """Encoder-independent settings (from ``ffmpeg.*`` config)."""

    bitrate: str = "2M"
    preset: str = "veryfast"
    profile: str = "main"
    tune: str | None = None


def global_args(encoder: str) -> list[str]:
    """Options that must come before the input (the VAAPI device)."""
    if encoder == "h264_vaapi":
        return ["-vaapi_device", VAAPI_DEVICE]
    return []


def encode_args(encoder: str, options: EncodeOptions, gop: int) -> list[str]:
    """``-c:v …`` for one encoder: 4:2:0 output every player decodes, a key frame every
    ``gop`` frames."""
    if encoder == SOFTWARE_ENCODER:
        args = ["-c:v", SOFTWARE_ENCODER, "-preset", options.preset]
        if options.tune:
            args += ["-tune", options.tune]
        return [
            *args,
            *("-b:v", options.bitrate, "-profile:v", options.profile),
            *("-pix_fmt", "yuv420p", "-g", str(gop)),
        ]
    if encoder == "h264_vaapi":
        return [
            "-vf",
            "format=nv12,hwupload",
            "-c:v",
            encoder,
            "-b:v",
            options.bitrate,
            "-g",
            str(gop),
        ]
    if encoder == "h264_qsv":
        return ["-pix_fmt", "nv12", "-c:v", encoder, "-b:v", options.bitrate, "-g", str(gop)]
    return ["-pix_fmt", "yuv420p", "-c:v", encoder, "-b:v", options.bitrate, "-g", str(gop)]


def probe_argv(ffmpeg: str, encoder: str) -> list[str]:
    """A short test encode of a generated picture to nowhere."""
    return [
        *(ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error"),
        *global_args(encoder),
        *("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=10"),
        *("-frames:v", str(PROBE_FRAMES), "-an"),
        *encode_args(encoder, EncodeOptions(bitrate="500k", preset="ultrafast"), 10),
        *("-f", "null", "-"),
    ]


def listed_encoders(encoders_output: str) -> set[str]:
    """Encoder names from ``ffmpeg -encoders`` output (``" V....D libx264  …"`` lines)."""
    names = set()
    for line in encoders_output.splitlines():
        parts = line.split()
        if len(parts) >= 2 and len(parts[0]) == 6 and parts[0][0] == "V":
            names.add(parts[1])
    return names


@dataclass
class EncoderReport:
    """What the probe found: ``selected`` is used for every encode."""

    selected: str = SOFTWARE_ENCODER
    requested: str = "auto"
    available: list[str] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)  # name → why
    probed: bool = False
    reason: str = "not probed yet: libx264"

    def public_dict(self) -> dict[str, object]:
        return {
            "selected": self.selected,
            "requested": self.requested,
            "available": list(self.available),
            "unavailable": dict(self.unavailable),
            "reason": self.reason,
        }


# (argv, timeout) → (ok, the telling stderr line): a supervised one-shot FFmpeg run
RunFn = Callable[[Sequence[str], float], Awaitable[tuple[bool, str]]]


def supervised(supervisor: ProcessSupervisor) -> RunFn:
    """Run the probes through the daemon's process supervisor (owned, killed with it)."""

    async def run(argv: Sequence[str], timeout: float) -> tuple[bool, str]:
        try:
            result = await supervisor.run_once(argv, timeout, role="encoder-probe")
        except MediaError as exc:
            return False, exc.detail
        return result.ok, result.error_summary()

    return run


def _why(summary: str) -> str:
    if "Unknown encoder" in summary or "Unrecognized option" in summary:
        return "not built into this FFmpeg"
    return summary


async def probe_encoders(
    ffmpeg: str, requested: str, run: RunFn, *, test_requested: bool = True
) -> EncoderReport:
    """Find the encoder to use. ``requested`` names one (used as is; its test encode, unless
    ``test_requested`` is false, only decides what is reported) or is ``auto``: the first
    hardware encoder whose test encode works, else libx264."""
    report = EncoderReport(requested=requested, probed=True)
    if requested != "auto" and not test_requested:
        report.selected = requested
        report.reason = f"{requested} as configured (not probed)"
        return report
    candidates = [requested] if requested != "auto" else list(KNOWN_ENCODERS)
    for name in candidates:
        works, summary = await run(probe_argv(ffmpeg, name), PROBE_TIMEOUT)
        if works:
            report.available.append(name)
            if requested == "auto" and name != SOFTWARE_ENCODER:
                break  # the first working hardware encoder is used; no need to try more
        else:
            report.unavailable[name] = _why(summary)
    if requested != "auto":
        report.selected = requested
        state = "works" if requested in report.available else "failed the test encode"
        report.reason = f"{requested} as configured ({state})"
        return report
    hardware = [n for n in report.available if n != SOFTWARE_ENCODER]
    if hardware:
        report.selected = hardware[0]
        report.reason = f"hardware encoder {hardware[0]} works"
    elif SOFTWARE_ENCODER in report.available:
        report.reason = "no hardware H.264 encoder works here: libx264"
    else:
        why = report.unavailable.get(SOFTWARE_ENCODER, "")
        report.reason = f"no H.264 encoder passed the test encode ({why}): libx264"
        log.warning("libx264 failed its test encode: %s", why)
    return report


def publish_args(
    is_h264: bool, encoder: str, fps: int | None, software_args: Sequence[str]
) -> tuple[list[str], list[str]]:
    """``(before the input, after it)`` for the FFmpeg that publishes a camera to MediaMTX:
    H.264 is copied; ``software_args`` (libx264 tuned for latency) unless a hardware encoder
    was selected, which then gets a key frame every 2 s."""
    if is_h264:
        return [], ["-an", "-c:v", "copy"]
    if encoder == SOFTWARE_ENCODER:
        return [], list(software_args)
    options = EncodeOptions(bitrate="2M")
    return global_args(encoder), ["-an", *encode_args(encoder, options, 2 * (fps or 15))]
