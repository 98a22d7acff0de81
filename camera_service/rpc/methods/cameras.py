"""Camera methods: list, status, capabilities, and external (RTSP/HTTP) stream sources."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import Field

from camera_service.auth.identity import Identity
from camera_service.auth.roles import Role
from camera_service.cameras.external import (
    ExternalStreamError,
    ExternalStreamNotFound,
    ExternalStreamStore,
    mask_credentials,
)
from camera_service.cameras.model import CAMERA_ID_PATTERN, Camera, CameraStatus
from camera_service.cameras.registry import CameraIdError, CameraRegistry
from camera_service.rpc.errors import InvalidParams, NotFound
from camera_service.rpc.registry import NoParams, Params, Registry, Result
from camera_service.rpc.session import CallContext

#: The public camera object for a caller (stream URLs carry tokens issued to it).
Present = Callable[[Camera, Identity | None], dict[str, Any]]
StreamMetrics = Callable[[Camera], dict[str, Any]]


class DeviceParams(Params):
    device: str = Field(..., pattern=CAMERA_ID_PATTERN, description="Camera id, e.g. camera0")


class CameraObject(Result):
    device: str
    status: Literal["CONNECTED", "DISCONNECTED", "ERROR"]
    name: str
    resolution: str
    fps: int
    streams: dict[str, str]
    recording: dict[str, Any] | None = None


class CameraList(Result):
    cameras: list[CameraObject]
    total: int
    connected: int


class CameraStatusResult(CameraObject):
    metrics: dict[str, Any]
    capabilities: dict[str, Any]


class CapabilitiesResult(Result):
    device: str
    formats: list[str]
    resolutions: list[str]
    fps_options: dict[str, list[int]]
    validation_status: Literal["NONE", "DISCONNECTED", "CONFIRMED"]
    modes: dict[str, dict[str, list[int]]] = {}  # pixel format → size → frame rates (V4L2)


class AddExternalParams(Params):
    stream_url: str = Field(..., max_length=2048, description="rtsp, rtsps, http or https URL")
    stream_name: str = Field(..., pattern=CAMERA_ID_PATTERN, description="Becomes the camera id")
    stream_type: str | None = Field(None, max_length=32)


class RemoveExternalParams(Params):
    stream_url: str = Field(..., max_length=2048)


class AddExternalResult(Result):
    stream_url: str
    stream_name: str
    stream_type: str
    status: Literal["ADDED"]
    timestamp: str


class RemoveExternalResult(Result):
    stream_url: str
    status: Literal["REMOVED"]
    timestamp: str


class ExternalStreamsResult(Result):
    external_streams: list[dict[str, Any]]
    total_count: int
    timestamp: str


@dataclass
class CameraDeps:
    cameras: CameraRegistry
    external: ExternalStreamStore
    present: Present  # the public camera object (streams, recording state)
    stream_metrics: StreamMetrics


def camera_or_error(cameras: CameraRegistry, device: str) -> Camera:
    camera = cameras.get(device)
    if camera is None:
        raise NotFound("camera", device)
    return camera


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def register(registry: Registry, deps: CameraDeps) -> None:
    public = deps.present

    @registry.method("get_camera_list", result=CameraList, role=Role.VIEWER, inline=True)
    async def get_camera_list(ctx: CallContext, params: NoParams) -> dict[str, Any]:
        """All known cameras, with DISCONNECTED ones until forget_after."""
        cameras = deps.cameras.list()
        connected = sum(1 for c in cameras if c.status is CameraStatus.CONNECTED)
        return {
            "cameras": [public(c, ctx.identity) for c in cameras],
            "total": len(cameras),
            "connected": connected,
        }

    @registry.method(
        "get_camera_status",
        params=DeviceParams,
        result=CameraStatusResult,
        role=Role.VIEWER,
        inline=True,
    )
    async def get_camera_status(ctx: CallContext, params: DeviceParams) -> dict[str, Any]:
        """One camera with stream metrics and a capabilities summary; unknown → -32010."""
        camera = camera_or_error(deps.cameras, params.device)
        since = camera.connected_at if camera.connected else None
        uptime = time.time() - since if since else 0.0
        metrics = {
            "bytes_sent": 0,
            "readers": 0,
            **deps.stream_metrics(camera),
            "uptime": round(uptime, 3),
        }
        capabilities = {
            "formats": camera.capabilities.formats,
            "resolutions": camera.capabilities.resolutions,
        }
        result = {**public(camera, ctx.identity), "metrics": metrics, "capabilities": capabilities}
        if camera.error:
            result["error"] = camera.error
        return result

    @registry.method(
        "get_camera_capabilities",
        params=DeviceParams,
        result=CapabilitiesResult,
        role=Role.VIEWER,
        inline=True,
    )
    async def get_camera_capabilities(ctx: CallContext, params: DeviceParams) -> dict[str, Any]:
        """Pixel formats, frame sizes and frame rates per size (from V4L2 for USB cameras)."""
        camera = camera_or_error(deps.cameras, params.device)
        caps = camera.capabilities
        return {
            "device": camera.id,
            "formats": caps.formats,
            "resolutions": caps.resolutions or [camera.resolution],
            "fps_options": caps.fps_options or {camera.resolution: [camera.fps]},
            "validation_status": camera.validation_status.value,
            "modes": {fourcc: dict(sizes) for fourcc, sizes in caps.modes.items()},
        }

    @registry.method(
        "add_external_stream",
        params=AddExternalParams,
        result=AddExternalResult,
        role=Role.OPERATOR,
    )
    async def add_external_stream(ctx: CallContext, params: AddExternalParams) -> dict[str, Any]:
        """Add an RTSP/HTTP source as a camera whose id is stream_name (persisted)."""
        try:
            # Persist first (it validates and refuses duplicates), then register; if a
            # hot-plugged camera took the name during the write, the saved entry is undone.
            stream = await deps.external.add(
                params.stream_url,
                params.stream_name,
                params.stream_type,
                reserved_ids=deps.cameras.ids(),
            )
        except ExternalStreamError as exc:
            raise _invalid(exc) from None
        try:
            deps.cameras.add_external(stream.stream_name, stream.stream_url, stream.stream_type)
        except CameraIdError as exc:
            await deps.external.remove(stream.stream_url)  # a camera took the name meanwhile
            raise _invalid(exc) from None
        return {
            "stream_url": stream.stream_url,
            "stream_name": stream.stream_name,
            "stream_type": stream.stream_type,
            "status": "ADDED",
            "timestamp": _now_iso(),
        }

    @registry.method(
        "remove_external_stream",
        params=RemoveExternalParams,
        result=RemoveExternalResult,
        role=Role.OPERATOR,
    )
    async def remove_external_stream(
        ctx: CallContext, params: RemoveExternalParams
    ) -> dict[str, Any]:
        """Remove an external stream added with add_external_stream."""
        try:
            stream = await deps.external.remove(params.stream_url)
        except ExternalStreamNotFound:
            raise NotFound("stream", params.stream_url) from None
        deps.cameras.remove_external(stream.stream_name)
        return {"stream_url": stream.stream_url, "status": "REMOVED", "timestamp": _now_iso()}

    @registry.method(
        "get_external_streams", result=ExternalStreamsResult, role=Role.VIEWER, inline=True
    )
    async def get_external_streams(ctx: CallContext, params: NoParams) -> dict[str, Any]:
        """External streams added at run time."""
        streams = [
            {**s.public_dict(), "stream_url": mask_credentials(s.stream_url)}
            for s in deps.external.list()
        ]
        return {"external_streams": streams, "total_count": len(streams), "timestamp": _now_iso()}


def _invalid(exc: Exception) -> InvalidParams:
    if isinstance(exc, ExternalStreamError):
        return InvalidParams(exc.param, exc.rule, exc.hint)
    return InvalidParams("stream_name", str(exc), "use letters, digits, '_' and '-'")
