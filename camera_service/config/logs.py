"""The `logging` section."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from camera_service.config.base import Section


class LoggingConfig(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level (SIGHUP applies a change)"
    )
    format: Literal["json", "text"] = Field("json", description="One JSON object per line, or text")

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value
