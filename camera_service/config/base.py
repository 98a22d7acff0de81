"""What every section model shares: strict, frozen models and the common field types."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Port = Annotated[int, Field(ge=0, le=65535, description="TCP port; 0 picks a free one")]
Percent = Annotated[float, Field(gt=0, le=100)]
Seconds = Annotated[float, Field(gt=0, le=86400 * 365)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=True)
