"""Health aggregation: components report their own status; probes and get_status read it here."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

ComponentState = Literal["healthy", "degraded", "unhealthy", "disabled", "starting"]
RunState = Literal["RUNNING", "STOPPED", "ERROR", "STARTING", "STOPPING"]

# get_status.components values (contract 1.1): a degraded component still runs.
RUN_STATES: dict[str, RunState] = {
    "healthy": "RUNNING",
    "degraded": "RUNNING",
    "unhealthy": "ERROR",
    "disabled": "STOPPED",
    "starting": "STARTING",
}


@dataclass(frozen=True, slots=True)
class ComponentStatus:
    status: ComponentState
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _Component:
    probe: Callable[[], ComponentStatus]
    required: bool


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Health:
    """Named component probes plus readiness conditions."""

    def __init__(self) -> None:
        self._components: dict[str, _Component] = {}
        self._readiness: dict[str, asyncio.Event] = {}
        self.stopping = False

    def register(
        self, name: str, probe: Callable[[], ComponentStatus], *, required: bool = True
    ) -> None:
        self._components[name] = _Component(probe, required)

    def require_ready(self, name: str, condition: asyncio.Event) -> None:
        """Readiness waits until `condition` is set."""
        self._readiness[name] = condition

    def component(self, name: str) -> ComponentStatus | None:
        entry = self._components.get(name)
        return entry.probe() if entry else None

    def components(self) -> dict[str, ComponentStatus]:
        return {name: entry.probe() for name, entry in self._components.items()}

    def run_state(self, status: ComponentStatus) -> RunState:
        """The contract's status string of a component (``STOPPING`` while shutting down)."""
        if self.stopping and status.status != "disabled":
            return "STOPPING"
        return RUN_STATES[status.status]

    def problems(self) -> list[str]:
        """``"<component>: <reason>"`` for every component that is not healthy."""
        out = []
        for name, status in self.components().items():
            if status.status in ("degraded", "unhealthy"):
                reason = status.details.get("reason") or status.status
                out.append(f"{name}: {reason}")
        return out

    def overall(self) -> Literal["healthy", "degraded", "unhealthy"]:
        worst: Literal["healthy", "degraded", "unhealthy"] = "healthy"
        for entry in self._components.values():
            state = entry.probe().status
            if state == "unhealthy" and entry.required:
                return "unhealthy"
            if state in ("unhealthy", "degraded", "starting"):
                worst = "degraded"
        return worst

    def not_ready(self) -> dict[str, bool]:
        """Readiness conditions that do not hold yet (empty when ready)."""
        return {name: False for name, event in self._readiness.items() if not event.is_set()}

    async def wait_ready(self) -> None:
        for event in list(self._readiness.values()):
            await event.wait()
