"""The `cameras` section: discovery, configured sources and per-device capture settings."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator

from camera_service.cameras.model import CAMERA_ID_PATTERN, is_valid_camera_id
from camera_service.config.base import Seconds, Section


class SourceConfig(Section):
    id: str = Field(..., pattern=CAMERA_ID_PATTERN, description="Camera id")
    name: str | None = Field(None, max_length=128, description="Display name")
    input: str = Field(..., min_length=1, description="FFmpeg input, e.g. testsrc2=size=640x480")
    input_format: str | None = Field(None, description="FFmpeg -f value, e.g. lavfi, v4l2")
    exclusive: bool = Field(False, description="Single reader: never opened twice at once")
    pixel_format: str | None = Field(
        None,
        pattern=r"^[A-Z0-9]{2,4}$",
        description="H264: the input is H.264, recorded and published by copy; with a v4l2 "
        "input also the capture format (MJPG, YUYV …)",
    )

    @field_validator("id")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if not is_valid_camera_id(value):
            raise ValueError(f"{value!r} is reserved (MediaMTX path names)")
        return value


class CameraDeviceConfig(Section):
    pixel_format: str = Field(
        "auto",
        pattern=r"^(auto|[A-Z0-9]{2,4})$",
        description="auto (H264, then MJPG, raw only when nothing else fits) or a fourcc",
    )
    resolution: str | None = Field(
        None,
        pattern=r"^\d{2,5}x\d{2,5}$",
        description="Capture size WxH; default: cameras.default_resolution",
    )
    fps: int | None = Field(
        None, ge=1, le=1000, description="Frame rate; default: cameras.default_fps"
    )
    controls: dict[str, int | bool] = Field(
        default_factory=dict,
        description="V4L2 controls by snake_case name (as get_camera_controls lists), applied at "
        "plug-in and after every capture start; values set through the API win",
    )

    @field_validator("controls")
    @classmethod
    def _control_names(cls, value: dict[str, int | bool]) -> dict[str, int | bool]:
        for name in value:
            if not re.fullmatch(r"[a-z0-9_]{1,64}", name):
                raise ValueError(f"{name!r} is not a control name (snake_case)")
        return value


class CamerasConfig(Section):
    discovery: Literal["udev", "poll", "off"] = Field("udev", description="How devices are found")
    poll_interval: Seconds = Field(2.0, description="Scan interval in poll mode")
    forget_after: Seconds = Field(300.0, description="Forget a disconnected camera after this")
    probe_timeout: Seconds = Field(5.0, description="V4L2 capability probe timeout")
    probe_retries: int = Field(2, ge=0, le=10, description="Probe retries before ERROR")
    default_resolution: str = Field(
        "640x480", pattern=r"^\d{2,5}x\d{2,5}$", description="Capture size when none is probed"
    )
    default_fps: int = Field(15, ge=1, le=240, description="Frame rate when none is probed")
    sources: list[SourceConfig] = Field(default_factory=list, description="Configured cameras")
    devices: dict[str, CameraDeviceConfig] = Field(
        default_factory=dict,
        description="Per V4L2 camera id (camera0 …): capture settings and controls",
    )
    warmup_frames: int = Field(
        5,
        ge=0,
        le=120,
        description="Frames skipped by a snapshot that opens a V4L2 camera (auto-exposure settles)",
    )

    @field_validator("discovery", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `off` as false; that is what the operator meant.
        return "off" if value is False else value

    @field_validator("devices")
    @classmethod
    def _device_ids(cls, devices: dict[str, CameraDeviceConfig]) -> dict[str, CameraDeviceConfig]:
        for camera_id in devices:
            if not is_valid_camera_id(camera_id):
                raise ValueError(f"{camera_id!r} is not a camera id")
        return devices

    @field_validator("sources")
    @classmethod
    def _unique_ids(cls, sources: list[SourceConfig]) -> list[SourceConfig]:
        ids = [s.id for s in sources]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"source ids must be unique, repeated: {', '.join(duplicates)}")
        return sources
