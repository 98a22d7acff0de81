"""Requests to MediaMTX on behalf of the daemon: health probing, fail fast, the path cache.

:class:`MediaMTXCalls` is the lowest layer of :class:`~.service.MediaMTXService`.
:class:`~camera_service.mediamtx.monitor.MediaMTXMonitor` probes ``/v3/info`` (backoff with
jitter while down, circuit breaker); calls fail fast with :class:`MediaMTXUnavailableError`
while MediaMTX is down instead of waiting for timeouts. ``/v3/paths/list`` and
``/v3/paths/get`` refresh a cache of the runtime state of every path (metrics, readiness),
and listeners hear when one of our cameras' paths became ready.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from camera_service.cameras.model import Camera
from camera_service.cameras.registry import CameraRegistry
from camera_service.config import MediaMTXConfig
from camera_service.mediamtx.client import (
    MediaMTXClient,
    MediaMTXError,
    MediaMTXNotFound,
    MediaMTXServerError,
    MediaMTXUnavailable,
)
from camera_service.mediamtx.errors import MediaMTXUnavailableError, StreamingDisabledError
from camera_service.mediamtx.models import Path as MtxPath
from camera_service.mediamtx.monitor import BreakerState, CircuitBreaker, MediaMTXMonitor
from camera_service.mediamtx.paths import path_name_for

log = logging.getLogger(__name__)

T = TypeVar("T")


class MediaMTXCalls:
    """MediaMTX's API as the daemon uses it: probed, failing fast while down, paths cached."""

    def __init__(
        self, config: MediaMTXConfig, cameras: CameraRegistry, client: MediaMTXClient
    ) -> None:
        self.config = config
        self.enabled = config.enabled
        self.cameras = cameras
        self.client = client
        self.monitor = MediaMTXMonitor(
            self.client,
            interval=config.health_interval,
            backoff_base=config.backoff_base,
            backoff_cap=config.backoff_max,
            probe_timeout=config.request_timeout,
            breaker=CircuitBreaker(3, reset_timeout=max(config.backoff_max, 0.1)),
            on_down=self._went_down,
            on_up=self._came_up,
        )
        self._paths: dict[str, MtxPath] = {}
        # Called with the camera id when its path becomes ready (the publisher FFmpeg, a
        # MediaMTX child, streams the device: start_streaming or an on-demand reader, seen
        # by the next path refresh): must not block or raise.
        self.stream_ready_listeners: list[Callable[[str], None]] = []

    def _went_down(self, reason: str) -> None:
        """The monitor lost MediaMTX: the cached path states are void."""
        self._paths.clear()

    def _came_up(self) -> None:
        """The monitor reached MediaMTX (again); the service reacts."""

    def stream_metrics(self, camera: Camera) -> dict[str, Any]:
        """``{bytes_sent, readers}`` from the last ``/v3/paths/list`` (never blocks)."""
        path = self._paths.get(camera.id)
        if path is None:
            return {}
        return {"bytes_sent": path.bytes_out, "readers": path.reader_count}

    def require_enabled(self) -> None:
        if not self.enabled:
            raise StreamingDisabledError("streaming is disabled (mediamtx.enabled: false)")

    def require_up(self) -> None:
        """Fail fast: no request is attempted while MediaMTX is known to be down."""
        self.require_enabled()
        breaker = self.monitor.breaker
        if not self.monitor.is_up or breaker.state is BreakerState.OPEN:
            status = self.monitor.status()
            detail = status["last_error"] or "not reachable yet"
            raise MediaMTXUnavailableError(f"{detail} (retry in {status['next_probe_in']} s)")

    async def _call(self, request: Callable[[], Awaitable[T]]) -> T:
        self.require_up()
        try:
            result = await request()
        except (MediaMTXUnavailable, MediaMTXServerError) as exc:
            self.monitor.breaker.record_failure()  # an outage: probe now, fail fast meanwhile
            self.monitor.trigger()
            raise MediaMTXUnavailableError(exc.message) from None
        except MediaMTXNotFound:
            raise
        except MediaMTXError as exc:  # refused (400) or misconfigured (401/403): no outage
            raise MediaMTXUnavailableError(exc.message) from None
        self.monitor.breaker.record_success()
        return result

    async def refresh_paths(self) -> list[MtxPath]:
        """``/v3/paths/list`` (every path), also refreshing the metrics cache."""
        paths = await self._call(self.client.list_all_paths)
        previous, self._paths = self._paths, {p.name: p for p in paths}
        for path in paths:
            self._note_ready(previous.get(path.name), path)
        return paths

    def _note_ready(self, before: MtxPath | None, path: MtxPath) -> None:
        """Tell the listeners about a path that became ready since the last look."""
        if not path.is_ready or not self.stream_ready_listeners:
            return
        if before is not None and before.is_ready and before.ready_time == path.ready_time:
            return
        if self.cameras.get(path.name) is None:
            return
        for listener in self.stream_ready_listeners:
            try:
                listener(path.name)
            except Exception:
                log.exception("stream ready listener failed")

    async def path_state(self, camera: Camera) -> MtxPath | None:
        """Runtime state of the camera's path (fresh); None when MediaMTX has no such path."""
        name = path_name_for(camera.id)
        try:
            path = await self._call(lambda: self.client.get_path(name))
        except MediaMTXNotFound:
            self._paths.pop(name, None)
            return None
        self._note_ready(self._paths.get(name), path)
        self._paths[name] = path
        return path
