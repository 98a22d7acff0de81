"""Camera controls and capture settings (API 1.1 §8.1; V4L2 cameras only)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import Field, field_validator

from camera_service.auth.roles import Role
from camera_service.cameras.capture_settings import CaptureSettingsService
from camera_service.cameras.controls import (
    CameraUnavailable,
    ControlService,
    ControlsUnsupported,
    DeviceFailed,
)
from camera_service.cameras.model import RESOLUTION_RE
from camera_service.media.capture import CaptureSettingsError
from camera_service.rpc.errors import (
    DependencyFailed,
    InvalidParams,
    InvalidState,
    NotFound,
    Unsupported,
)
from camera_service.rpc.methods.cameras import DeviceParams
from camera_service.rpc.registry import Registry, Result
from camera_service.rpc.session import CallContext

CONTROL_NAME_PATTERN = r"^[a-z0-9_]{1,64}$"
MAX_CONTROLS_PER_CALL = 64
PIXEL_FORMAT_PATTERN = r"^(auto|[A-Z0-9]{2,4})$"
_NAME = re.compile(CONTROL_NAME_PATTERN)


class SetControlsParams(DeviceParams):
    controls: dict[str, int | bool] = Field(
        ..., description="Control name (snake_case, as get_camera_controls lists) → value"
    )
    persist: bool = Field(True, description="Remember and re-apply (per physical camera)")

    @field_validator("controls")
    @classmethod
    def _names(cls, value: dict[str, int | bool]) -> dict[str, int | bool]:
        if not value:
            raise ValueError("give at least one control")
        if len(value) > MAX_CONTROLS_PER_CALL:
            raise ValueError(f"at most {MAX_CONTROLS_PER_CALL} controls per call")
        for name, item in value.items():
            if not _NAME.match(name):
                raise ValueError(f"{name[:64]!r} is not a control name (snake_case)")
            if not isinstance(item, bool) and not -(1 << 63) <= item < (1 << 63):
                raise ValueError(f"{name}: value out of the 64-bit range")
        return value


class SetSettingsParams(DeviceParams):
    pixel_format: str | None = Field(
        None, pattern=PIXEL_FORMAT_PATTERN, description="auto, or a fourcc: MJPG, H264, YUYV, …"
    )
    resolution: str | None = Field(None, pattern=RESOLUTION_RE.pattern, description="WxH")
    fps: int | None = Field(None, ge=1, le=1000, description="Frames per second")


class ControlsResult(Result):
    device: str
    controls: list[dict[str, Any]]


class SetControlsResult(Result):
    device: str
    applied: dict[str, int | bool]
    rejected: dict[str, str]


class ResetControlsResult(ControlsResult):
    applied: dict[str, int | bool]
    rejected: dict[str, str]


class SettingsResult(Result):
    device: str
    pixel_format: str
    resolution: str
    fps: int
    encoder: str


@dataclass
class ControlDeps:
    controls: ControlService
    settings: CaptureSettingsService


@contextlib.contextmanager
def _errors(device: str) -> Iterator[None]:
    try:
        yield
    except KeyError:
        raise NotFound("camera", device) from None
    except ControlsUnsupported:
        raise Unsupported(
            "camera-controls", f"Unsupported: camera {device} is not a V4L2 camera."
        ) from None
    except CameraUnavailable as exc:
        states = ["IDLE"] if exc.state == "RECORDING" else ["CONNECTED"]
        text = f"{exc}."
        raise InvalidState(text[:1].upper() + text[1:], exc.state, states) from None
    except DeviceFailed as exc:
        raise DependencyFailed("camera", str(exc)) from None
    except CaptureSettingsError as exc:
        listed = ", ".join(map(str, exc.allowed))
        error = InvalidParams(exc.param, exc.rule, f"allowed: {listed}")
        assert error.data is not None
        error.data["allowed"] = list(exc.allowed)
        raise error from None


def register(registry: Registry, deps: ControlDeps) -> None:
    @registry.method(
        "get_camera_controls", params=DeviceParams, result=ControlsResult, role=Role.VIEWER
    )
    async def get_camera_controls(ctx: CallContext, params: DeviceParams) -> dict[str, Any]:
        """The camera's V4L2 controls: type, range, default, current value, menu entries, flags."""
        with _errors(params.device):
            controls = await deps.controls.list_controls(params.device)
        return {"device": params.device, "controls": controls}

    @registry.method(
        "set_camera_controls",
        params=SetControlsParams,
        result=SetControlsResult,
        role=Role.OPERATOR,
    )
    async def set_camera_controls(ctx: CallContext, params: SetControlsParams) -> dict[str, Any]:
        """Write controls one by one; each lands in applied (value read back) or rejected
        (why). Persisted per physical camera and re-applied after replugs and capture starts."""
        with _errors(params.device):
            report = await deps.controls.set_controls(
                params.device, params.controls, persist=params.persist
            )
        return {"device": params.device, "applied": report.applied, "rejected": report.rejected}

    @registry.method(
        "reset_camera_controls",
        params=DeviceParams,
        result=ResetControlsResult,
        role=Role.OPERATOR,
    )
    async def reset_camera_controls(ctx: CallContext, params: DeviceParams) -> dict[str, Any]:
        """Every control back to the driver's default; the persisted values are cleared."""
        with _errors(params.device):
            report, controls = await deps.controls.reset_controls(params.device)
        return {
            "device": params.device,
            "controls": controls,
            "applied": report.applied,
            "rejected": report.rejected,
        }

    @registry.method(
        "get_camera_settings",
        params=DeviceParams,
        result=SettingsResult,
        role=Role.VIEWER,
        inline=True,
    )
    async def get_camera_settings(ctx: CallContext, params: DeviceParams) -> dict[str, Any]:
        """Capture settings: the requested pixel_format (auto or a fourcc), the resolution and
        fps in use, the format auto chose and why, and the encoder (copy for H.264 cameras)."""
        with _errors(params.device):
            return deps.settings.settings(params.device)

    @registry.method(
        "set_camera_settings",
        params=SetSettingsParams,
        result=SettingsResult,
        role=Role.OPERATOR,
    )
    async def set_camera_settings(ctx: CallContext, params: SetSettingsParams) -> dict[str, Any]:
        """Change pixel_format, resolution and/or fps, validated against the camera's
        capabilities (-32602 names the allowed values); refused while it records (-32020)."""
        with _errors(params.device):
            return await deps.settings.update(
                params.device, params.pixel_format, params.resolution, params.fps
            )
