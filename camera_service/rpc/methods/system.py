"""System methods: ping, server info, status, metrics, OpenRPC discovery."""

from __future__ import annotations

import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from camera_service import API_VERSION, __version__
from camera_service.auth.roles import Role
from camera_service.health import Health, RunState, utc_now_iso
from camera_service.metrics import Metrics
from camera_service.rpc.protocol import RawJson
from camera_service.rpc.registry import NoParams, Registry, Result
from camera_service.rpc.session import CallContext

Section = Callable[[], dict[str, Any]]


class ServerInfo(Result):
    name: str
    version: str
    api_version: str
    python_version: str
    architecture: str
    capabilities: list[str]
    supported_formats: list[str] = Field(
        description="Every snapshot and recording format, e.g. fmp4, mp4, mkv, jpg, png"
    )
    formats: dict[str, list[str]] = Field(description="The formats per kind (snapshot, recording)")
    max_cameras: int


class ComponentInfo(Result):
    status: str
    details: dict[str, Any] = Field(default_factory=dict)


class StatusResult(Result):
    status: Literal["HEALTHY", "DEGRADED", "UNHEALTHY"]
    uptime: float
    version: str
    components: dict[str, RunState] = Field(
        description="Component name → RUNNING, STOPPED, ERROR, STARTING or STOPPING"
    )
    component_details: dict[str, ComponentInfo] = Field(
        description="Component name → {status: healthy|degraded|unhealthy|disabled|starting, "
        "details} (details.reason when not healthy)"
    )


class SystemStatus(Result):
    status: Literal["starting", "partial", "ready"]
    message: str
    available_cameras: list[str] = Field(description="Ids of the CONNECTED cameras")
    camera_count: int = Field(description="How many cameras are CONNECTED")
    discovery_active: bool


class MetricsResult(Result):
    timestamp: str
    system_metrics: dict[str, Any]
    camera_metrics: dict[str, Any]
    recording_metrics: dict[str, Any]
    stream_metrics: dict[str, Any]
    rpc_metrics: dict[str, Any]


@dataclass
class SystemDeps:
    registry: Registry
    health: Health
    metrics: Metrics
    system_status: Callable[[], dict[str, Any]]
    capabilities: Callable[[], list[str]]
    supported_formats: dict[str, list[str]]
    max_cameras: int
    host_usage: Callable[[], dict[str, float]] = dict
    metric_sections: dict[str, Callable[[bool], dict[str, Any]]] = field(default_factory=dict)


def _section(deps: SystemDeps, name: str, admin: bool) -> dict[str, Any]:
    provider = deps.metric_sections.get(name)
    return provider(admin) if provider else {"available": False}


def _flat_formats(formats: dict[str, list[str]]) -> list[str]:
    """Recording formats first (the contract's order), then snapshots, then any others."""
    order = sorted(formats, key=lambda kind: {"recording": 0, "snapshot": 1}.get(kind, 2))
    return [name for kind in order for name in formats[kind]]


def register(registry: Registry, deps: SystemDeps) -> None:
    @registry.method("ping", result=Literal["pong"], role=None, inline=True)
    async def ping(ctx: CallContext, params: NoParams) -> str:
        """Liveness check; needs no credentials. Returns "pong"."""
        return "pong"

    @registry.method("rpc.discover", result=dict[str, Any], role=None, inline=True)
    async def discover(ctx: CallContext, params: NoParams) -> RawJson:
        """OpenRPC 1.x document generated from the method registry."""
        return RawJson(deps.registry.openrpc_text())

    @registry.method("get_server_info", result=ServerInfo, role=Role.VIEWER, inline=True)
    async def get_server_info(ctx: CallContext, params: NoParams) -> ServerInfo:
        """Name, versions, platform, enabled capabilities and supported formats."""
        return ServerInfo(
            name="camera-service",
            version=__version__,
            api_version=API_VERSION,
            python_version=platform.python_version(),
            architecture=platform.machine(),
            capabilities=deps.capabilities(),
            supported_formats=_flat_formats(deps.supported_formats),
            formats=deps.supported_formats,
            max_cameras=deps.max_cameras,
        )

    @registry.method("get_status", result=StatusResult, role=Role.ADMIN, inline=True)
    async def get_status(ctx: CallContext, params: NoParams) -> StatusResult:
        """Overall health (HEALTHY, DEGRADED, UNHEALTHY), each component's state and detail."""
        probed = deps.health.components()
        overall = deps.health.overall().upper()
        return StatusResult(
            status=overall,
            uptime=round(deps.metrics.uptime(), 3),
            version=__version__,
            components={name: deps.health.run_state(c) for name, c in probed.items()},
            component_details={
                name: ComponentInfo(status=c.status, details=c.details)
                for name, c in probed.items()
            },
        )

    @registry.method("get_system_status", result=SystemStatus, role=Role.VIEWER, inline=True)
    async def get_system_status(ctx: CallContext, params: NoParams) -> SystemStatus:
        """Discovery readiness: starting, partial or ready, with the connected cameras."""
        return SystemStatus(**deps.system_status())

    @registry.method("get_metrics", result=MetricsResult, role=Role.ADMIN, inline=True)
    async def get_metrics(ctx: CallContext, params: NoParams) -> MetricsResult:
        """Real process, camera, recording, stream and RPC figures."""
        return MetricsResult(
            timestamp=utc_now_iso(),
            system_metrics={
                **deps.metrics.system(),
                **deps.host_usage(),
                "python": sys.version.split()[0],
            },
            camera_metrics=_section(deps, "cameras", True),
            recording_metrics=_section(deps, "recordings", True),
            stream_metrics=_section(deps, "streams", True),
            rpc_metrics={**deps.metrics.rpc(), "measured_at": time.time()},
        )
