"""Sections of the file store: `storage` (directories, disk limits) and `retention`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from camera_service.config.base import Percent, Seconds, Section


class StorageConfig(Section):
    recordings_dir: Path = Field(
        Path("/var/lib/camera-service/recordings"), description="Where recordings are written"
    )
    snapshots_dir: Path = Field(
        Path("/var/lib/camera-service/snapshots"), description="Where snapshots are written"
    )
    state_dir: Path = Field(
        Path("/var/lib/camera-service/state"), description="API keys, secrets, policies"
    )
    warn_percent: Percent = Field(80.0, description="Disk usage that raises a warning")
    block_percent: Percent = Field(95.0, description="Disk usage that refuses new files")
    when_full: Literal["delete_oldest", "stop"] = Field(
        "delete_oldest",
        description="At block_percent: delete the oldest continuous segments, or stop recording",
    )

    @field_validator("block_percent")
    @classmethod
    def _block_above_warn(cls, value: float, info: Any) -> float:
        warn = info.data.get("warn_percent")
        if warn is not None and value < warn:
            raise ValueError("block_percent must be >= warn_percent")
        return value


class RetentionConfig(Section):
    enabled: bool = Field(False, description="Initial policy; set_retention_policy overrides it")
    policy_type: Literal["age", "size", "manual"] = Field(
        "manual", description="age: by max_age_days; size: by max_size_gb; manual: never"
    )
    max_age_days: float | None = Field(None, gt=0, description="Delete files older than this")
    max_size_gb: float | None = Field(
        None, gt=0, description="Delete the oldest files above this total (GB = 10^9 bytes)"
    )
    interval: Seconds = Field(3600.0, description="Cleanup loop interval")
