"""Sections of continuous recording: `continuous` (segments, per-camera retention) and `motion`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from camera_service.cameras.model import is_valid_camera_id
from camera_service.config.base import Seconds, Section


class MotionZone(Section):
    """A rectangle in fractions of the picture (0..1 from the top-left corner)."""

    x: float = Field(..., ge=0, lt=1, description="Left edge")
    y: float = Field(..., ge=0, lt=1, description="Top edge")
    width: float = Field(..., gt=0, le=1, description="Width")
    height: float = Field(..., gt=0, le=1, description="Height")


class MotionConfig(Section):
    enabled: bool = Field(
        False, description="Detect motion alongside continuous recording (motion mode always does)"
    )
    sensitivity: int = Field(
        80, ge=1, le=100, description="Higher reacts to smaller moving areas (area > (101-s)/10 %)"
    )
    pixel_threshold: int = Field(
        24, ge=1, le=255, description="Grey-level change (0-255) that makes a pixel count as moving"
    )
    min_duration: float = Field(
        1.0, ge=0, le=60, description="Seconds of motion before an event starts"
    )
    end_after: float = Field(
        2.0, gt=0, le=300, description="Seconds without motion that end an event"
    )
    fps: float = Field(5.0, gt=0, le=15, description="Analysed frames per second")
    width: int = Field(160, ge=16, le=640, description="Width of the analysed grey picture")
    height: int = Field(120, ge=12, le=480, description="Height of the analysed grey picture")
    zones: list[MotionZone] = Field(
        default_factory=list, description="Only these areas are analysed (empty: whole picture)"
    )
    mask: list[MotionZone] = Field(
        default_factory=list, description="Areas never analysed (applied after zones)"
    )

    @model_validator(mode="after")
    def _one_datagram(self) -> MotionConfig:
        if self.width * self.height > 65507:
            raise ValueError("width x height must be at most 65507 (one UDP datagram per frame)")
        return self


class CameraRecordingConfig(Section):
    retain_days: float | None = Field(
        None, gt=0, description="Delete this camera's continuous segments older than this"
    )
    retain_gb: float | None = Field(
        None, gt=0, description="Keep at most this much of this camera's segments (10^9 bytes)"
    )
    motion: dict[str, Any] = Field(
        default_factory=dict, description="Overrides of motion.* keys for this camera"
    )


class ContinuousConfig(Section):
    segments_dir: Path | None = Field(
        None,
        description="Where continuous segments go (default: <recordings_dir>/.continuous); "
        "keep it on the recordings file system, whose usage the roll-over watches",
    )
    segment_seconds: int = Field(
        60, ge=10, le=3600, description="Default segment length of set_recording_mode"
    )
    pre_roll: float = Field(5.0, ge=0, le=300, description="Default seconds kept before motion")
    post_roll: float = Field(5.0, ge=0, le=300, description="Default seconds kept after motion")
    retain_days: float | None = Field(
        None, gt=0, description="Default retain_days of every camera's continuous segments"
    )
    retain_gb: float | None = Field(
        None, gt=0, description="Default retain_gb of every camera's continuous segments"
    )
    frame_rate: float = Field(
        1.0, ge=0.2, le=15, description="Latest-frame JPEGs per second (snapshots, MJPEG)"
    )
    restart_backoff_base: Seconds = Field(1.0, description="First restart delay after a crash")
    restart_backoff_max: Seconds = Field(30.0, description="Restart delay cap")
    max_events: int = Field(
        10000, ge=10, le=1000000, description="Motion events kept in the event log"
    )
    cameras: dict[str, CameraRecordingConfig] = Field(
        default_factory=dict, description="Per-camera retention and motion settings, by id"
    )

    @field_validator("cameras")
    @classmethod
    def _camera_motion(
        cls, cameras: dict[str, CameraRecordingConfig]
    ) -> dict[str, CameraRecordingConfig]:
        for camera_id, entry in cameras.items():
            if not is_valid_camera_id(camera_id):
                raise ValueError(f"{camera_id!r} is not a valid camera id")
            MotionConfig.model_validate(entry.motion)
        return cameras

    def for_camera(self, camera_id: str) -> CameraRecordingConfig:
        entry = self.cameras.get(camera_id)
        return CameraRecordingConfig(
            retain_days=entry.retain_days if entry and entry.retain_days else self.retain_days,
            retain_gb=entry.retain_gb if entry and entry.retain_gb else self.retain_gb,
            motion=entry.motion if entry else {},
        )
