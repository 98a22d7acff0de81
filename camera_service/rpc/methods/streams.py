"""Streaming methods: MediaMTX paths of the cameras (start/stop publishing, URLs, status).

Errors: ``mediamtx.enabled: false`` → -32030 (``feature: "streaming"``); unknown camera →
-32010; MediaMTX down or its breaker open → -32050 at once (no request is attempted);
a camera that cannot stream now → -32020.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime
from typing import Literal

from camera_service.auth.roles import Role
from camera_service.cameras.model import Camera
from camera_service.cameras.registry import CameraRegistry
from camera_service.mediamtx.errors import (
    MediaMTXUnavailableError,
    StreamingDisabledError,
    StreamStateError,
)
from camera_service.mediamtx.models import Path as MtxPath
from camera_service.mediamtx.service import MediaMTXService
from camera_service.mediamtx.streaming import start_streaming as start_stream
from camera_service.mediamtx.streaming import stop_streaming as stop_stream
from camera_service.rpc.errors import DependencyFailed, InvalidState, Unsupported
from camera_service.rpc.methods.cameras import DeviceParams, camera_or_error
from camera_service.rpc.registry import NoParams, Registry, Result
from camera_service.rpc.session import CallContext

StreamStatus = Literal["ACTIVE", "INACTIVE", "ERROR", "STARTING", "STOPPING"]


class StartStreamingResult(Result):
    device: str
    stream_name: str
    stream_url: str
    streams: dict[str, str]
    status: Literal["STARTED"]
    start_time: str


class StopStreamingResult(Result):
    device: str
    stream_name: str
    status: Literal["STOPPED"]
    start_time: str
    end_time: str
    duration: float
    stream_continues: bool


class StreamUrlResult(Result):
    device: str
    stream_name: str
    stream_url: str
    streams: dict[str, str]
    available: bool
    active_consumers: int
    stream_status: Literal["READY", "NOT_READY", "ERROR"]


class StreamTraffic(Result):
    bytes_sent: int
    bytes_received: int


class StreamStatusResult(Result):
    device: str
    stream_name: str
    status: StreamStatus
    ready: bool
    readers: int
    metrics: StreamTraffic
    start_time: str | None


class StreamEntry(Result):
    name: str
    ready: bool
    readers: int
    bytes_sent: int
    source: str | None


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _iso_text(text: str | None) -> str | None:
    """A MediaMTX RFC 3339 time as our ISO form (milliseconds, Z); None stays None."""
    if not text:
        return None
    try:
        return _iso(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        return text


@contextlib.contextmanager
def translated_stream_errors() -> Iterator[None]:
    """Service exceptions → catalog errors."""
    try:
        yield
    except StreamingDisabledError:
        raise Unsupported(
            "streaming", "Unsupported: streaming is disabled (mediamtx.enabled is false)."
        ) from None
    except MediaMTXUnavailableError as exc:
        raise DependencyFailed("mediamtx", exc.detail) from None
    except StreamStateError as exc:
        raise InvalidState(exc.message, exc.state, exc.allowed) from None


def register(registry: Registry, service: MediaMTXService, cameras: CameraRegistry) -> None:
    def streaming_camera(device: str) -> Camera:
        """Checks in contract order: feature disabled, unknown camera, MediaMTX down."""
        with translated_stream_errors():
            service.require_enabled()
        camera = camera_or_error(cameras, device)
        with translated_stream_errors():
            service.require_up()
        return camera

    def urls(camera: Camera, ctx: CallContext) -> tuple[str, dict[str, str]]:
        streams = service.streams_for(camera, ctx.identity)
        return streams.get("rtsp", ""), streams

    @registry.method(
        "start_streaming",
        params=DeviceParams,
        result=StartStreamingResult,
        role=Role.OPERATOR,
    )
    async def start_streaming(ctx: CallContext, params: DeviceParams) -> StartStreamingResult:
        """Keep the camera published (a held reader) and return once MediaMTX has it ready."""
        camera = streaming_camera(params.device)
        with translated_stream_errors():
            started = await start_stream(service, camera)
        url, streams = urls(camera, ctx)
        return StartStreamingResult(
            device=camera.id,
            stream_name=camera.id,
            stream_url=url,
            streams=streams,
            status="STARTED",
            start_time=_iso(started),
        )

    @registry.method(
        "stop_streaming", params=DeviceParams, result=StopStreamingResult, role=Role.OPERATOR
    )
    async def stop_streaming(ctx: CallContext, params: DeviceParams) -> StopStreamingResult:
        """Drop the held reader; stream_continues is true while a recording reads the stream."""
        camera = streaming_camera(params.device)
        with translated_stream_errors():
            stop = await stop_stream(service, camera)
        return StopStreamingResult(
            device=camera.id,
            stream_name=camera.id,
            status="STOPPED",
            start_time=_iso(stop.start_time),
            end_time=_iso(stop.end_time),
            duration=round((stop.end_time - stop.start_time).total_seconds(), 3),
            stream_continues=stop.stream_continues,
        )

    @registry.method(
        "get_stream_url", params=DeviceParams, result=StreamUrlResult, role=Role.VIEWER
    )
    async def get_stream_url(ctx: CallContext, params: DeviceParams) -> StreamUrlResult:
        """RTSP, HLS, WebRTC page and WHEP URLs of the camera, with readiness and readers."""
        camera = streaming_camera(params.device)
        with translated_stream_errors():
            path = await service.path_state(camera)
        url, streams = urls(camera, ctx)
        state: Literal["READY", "NOT_READY", "ERROR"] = "ERROR"
        if path is not None:
            state = "READY" if path.is_ready else "NOT_READY"
        return StreamUrlResult(
            device=camera.id,
            stream_name=camera.id,
            stream_url=url,
            streams=streams,
            available=path is not None and camera.connected,
            active_consumers=path.reader_count if path is not None else 0,
            stream_status=state,
        )

    @registry.method(
        "get_stream_status", params=DeviceParams, result=StreamStatusResult, role=Role.VIEWER
    )
    async def get_stream_status(ctx: CallContext, params: DeviceParams) -> StreamStatusResult:
        """State of the camera's stream in MediaMTX: readiness, readers, traffic."""
        camera = streaming_camera(params.device)
        with translated_stream_errors():
            path = await service.path_state(camera)
        since = service.streaming_since(camera.id)
        start = _iso(since) if since else _iso_text(path.ready_time if path else None)
        return StreamStatusResult(
            device=camera.id,
            stream_name=camera.id,
            status=_status(path, since is not None),
            ready=path is not None and path.is_ready,
            readers=path.reader_count if path is not None else 0,
            metrics=StreamTraffic(
                bytes_sent=path.bytes_out if path is not None else 0,
                bytes_received=path.bytes_in if path is not None else 0,
            ),
            start_time=start,
        )

    @registry.method("get_streams", result=list[StreamEntry], role=Role.VIEWER)
    async def get_streams(ctx: CallContext, params: NoParams) -> list[StreamEntry]:
        """Every path MediaMTX has, with readiness, readers, bytes sent and source type."""
        with translated_stream_errors():
            service.require_up()
            paths = await service.refresh_paths()
        return [_entry(path) for path in paths]


def _status(path: MtxPath | None, explicit: bool) -> StreamStatus:
    if path is None:
        return "ERROR"
    if path.is_ready:
        return "ACTIVE"
    return "STARTING" if explicit else "INACTIVE"


def _entry(path: MtxPath) -> StreamEntry:
    return StreamEntry(
        name=path.name,
        ready=path.is_ready,
        readers=path.reader_count,
        bytes_sent=path.bytes_out,
        source=path.source_type,
    )


__all__ = ["register", "translated_stream_errors"]
