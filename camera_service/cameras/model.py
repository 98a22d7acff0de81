"""Camera data model shared by discovery, the registry and the RPC layer.

Objects here are immutable snapshots: the registry replaces a camera with an updated copy
(``dataclasses.replace``) instead of mutating it, so listeners and RPC handlers can keep a
reference without seeing it change under them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

CAMERA_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"  # also the params models' pattern
CAMERA_ID_RE = re.compile(CAMERA_ID_PATTERN)
MAX_CAMERAS = 64  # get_server_info's max_cameras; also bounds per-camera lists in params
RESOLUTION_RE = re.compile(r"^([1-9][0-9]{0,4})x([1-9][0-9]{0,4})$")


# A camera's MediaMTX path is named by its id, and MediaMTX reserves these path names.
RESERVED_CAMERA_IDS = frozenset({"all", "all_others"})


def is_valid_camera_id(value: object) -> bool:
    """True when ``value`` is a well-formed public camera id (not whether it exists)."""
    return (
        isinstance(value, str)
        and CAMERA_ID_RE.fullmatch(value) is not None
        and value not in RESERVED_CAMERA_IDS
    )


def parse_resolution(value: str) -> tuple[int, int] | None:
    """``"640x480"`` → ``(640, 480)``; None when malformed."""
    match = RESOLUTION_RE.fullmatch(value)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


class CameraStatus(StrEnum):
    CONNECTED = "CONNECTED"
    DISCONNECTED = "DISCONNECTED"
    ERROR = "ERROR"


class CameraKind(StrEnum):
    V4L2 = "v4l2"
    CONFIGURED = "configured"
    EXTERNAL = "external"


class ValidationStatus(StrEnum):
    """``validation_status`` of get_camera_capabilities."""

    NONE = "NONE"
    DISCONNECTED = "DISCONNECTED"
    CONFIRMED = "CONFIRMED"


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a camera can deliver.

    ``resolutions`` are ``"WxH"`` strings sorted by pixel count (largest first);
    ``fps_options`` maps each resolution to its frame rates (descending, whole numbers).
    ``device_caps`` is the V4L2 device_caps bit mask (0 for non-V4L2 sources).
    ``modes`` maps each pixel format (fourcc) to its resolutions and their frame rates, so a
    capture mode can be chosen per format (empty for non-V4L2 sources).
    """

    formats: list[str] = field(default_factory=list)
    resolutions: list[str] = field(default_factory=list)
    fps_options: dict[str, list[int]] = field(default_factory=dict)
    card: str = ""
    driver: str = ""
    bus_info: str = ""
    device_caps: int = 0
    is_capture: bool = False
    modes: dict[str, dict[str, list[int]]] = field(default_factory=dict)

    def public_dict(self) -> dict[str, Any]:
        return {
            "formats": list(self.formats),
            "resolutions": list(self.resolutions),
            "fps_options": {res: list(fps) for res, fps in self.fps_options.items()},
        }


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """How a configured or external camera is read (FFmpeg input and its format)."""

    input: str
    input_format: str | None = None
    exclusive: bool = False
    pixel_format: str | None = None  # H264: the input is H.264 (copied); v4l2: capture format


@dataclass(frozen=True, slots=True)
class Camera:
    """One logical camera.

    ``device_path`` is internal (FFmpeg needs it) and never part of :meth:`public_dict`.
    ``stable_key`` identifies the physical device (its sysfs/USB port path) so that a replug
    gets back the same id; ``serial_key`` (vendor:product:serial:interface) is a secondary
    identity used when the device moves to another port.
    Times are wall-clock epoch seconds.
    """

    id: str
    kind: CameraKind
    status: CameraStatus
    name: str
    resolution: str
    fps: int
    capabilities: Capabilities = field(default_factory=Capabilities)
    device_path: str | None = None
    error: str | None = None
    source: SourceSpec | None = None
    stable_key: str | None = None
    serial_key: str | None = None
    connected_at: float | None = None
    disconnected_at: float | None = None
    pixel_format: str | None = None  # V4L2 capture format in use (fourcc); None: FFmpeg picks

    @property
    def connected(self) -> bool:
        return self.status is CameraStatus.CONNECTED

    @property
    def validation_status(self) -> ValidationStatus:
        if self.status is CameraStatus.DISCONNECTED:
            return ValidationStatus.DISCONNECTED
        if self.kind is CameraKind.V4L2 and self.status is CameraStatus.CONNECTED:
            return ValidationStatus.CONFIRMED
        return ValidationStatus.NONE

    def public_dict(self, streams: dict[str, str] | None = None) -> dict[str, Any]:
        """The api.md camera object. ``streams`` is ``{rtsp, hls, webrtc}`` or empty."""
        return {
            "device": self.id,
            "status": self.status.value,
            "name": self.name,
            "resolution": self.resolution,
            "fps": self.fps,
            "streams": dict(streams or {}),
        }
