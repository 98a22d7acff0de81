"""Camera discovery: device events (udev, polling, or injected) → probe → registry.

Event sources implement :class:`~camera_service.cameras.device_events.EventSource`:

* :class:`~camera_service.cameras.udev_source.UdevEventSource` — pyudev netlink monitor filtered
  on ``video4linux`` (``udev_source.py``).
* :class:`~camera_service.cameras.poll_source.PollEventSource` — scans ``<dev_root>/video*``
  (+ sysfs attributes) every ``poll_interval`` seconds and diffs (``poll_source.py``).
* ``tests/support/fake_devices.FakeEventSource`` — plug/unplug fake devices in tests.

:class:`Discovery` does the initial scan (probes in parallel, applied in node order), sets
``first_scan_done``, then handles events one at a time. Every probe runs off the event loop
with a timeout and retries (``probing.py``); a failure lists the device as ERROR with a reason
and never stops discovery. When the source fails (udev monitor error, queue overflow) discovery
logs it, restarts the source, rescans and reconciles the registry with what is present.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Literal

from camera_service.cameras.device_events import DeviceEvent, EventSource, node_order
from camera_service.cameras.model import Camera, CameraKind, CameraStatus, Capabilities
from camera_service.cameras.poll_source import PollEventSource
from camera_service.cameras.probing import ProbeFailure, Prober, probe_with_retries
from camera_service.cameras.registry import CameraRegistry
from camera_service.cameras.udev_source import DEFAULT_UDEV_CONTROL, UdevEventSource
from camera_service.cameras.v4l2 import V4L2Prober
from camera_service.supervise import start_supervised

log = logging.getLogger(__name__)

DiscoveryMode = Literal["udev", "poll", "off"]


# --- mode selection --------------------------------------------------------------------------


def create_event_source(
    mode: str,
    *,
    poll_interval: float = 2.0,
    sys_root: str = "/sys",
    dev_root: str = "/dev",
    udev_control_path: str = DEFAULT_UDEV_CONTROL,
) -> EventSource | None:
    """``udev`` (falls back to ``poll`` when unavailable, logged once), ``poll`` or ``off``."""
    if mode == "off":
        return None
    if mode == "udev":
        reason = UdevEventSource.unavailable_reason(udev_control_path)
        if reason is None:
            return UdevEventSource(sys_root=sys_root)
        log.warning(
            "udev camera discovery unavailable: %s; polling every %g s instead",
            reason,
            poll_interval,
        )
    elif mode != "poll":
        raise ValueError(f"unknown discovery mode {mode!r} (udev|poll|off)")
    return PollEventSource(poll_interval=poll_interval, sys_root=sys_root, dev_root=dev_root)


# --- discovery -------------------------------------------------------------------------------


class Discovery:
    """Feeds the registry from an event source. ``source=None`` means discovery is off."""

    def __init__(
        self,
        source: EventSource | None,
        prober: Prober,
        registry: CameraRegistry,
        *,
        probe_timeout: float = 5.0,
        probe_retries: int = 1,
        retry_delay: float = 0.5,
        resync_delay: float = 1.0,
        error_recheck_interval: float | None = 30.0,
        max_parallel_probes: int = 4,
        fallback_source: Callable[[], EventSource] | None = None,
    ) -> None:
        self.source = source
        self.prober = prober
        self.registry = registry
        self.probe_timeout = probe_timeout
        self.probe_retries = probe_retries
        self.retry_delay = retry_delay
        self.resync_delay = resync_delay
        self.error_recheck_interval = error_recheck_interval
        self._fallback = fallback_source
        self._parallel = asyncio.Semaphore(max_parallel_probes)
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.first_scan_done = asyncio.Event()
        self.events_handled = 0
        self.last_error: str | None = None

    # --- state -------------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        return self.source.name if self.source is not None else "off"

    @property
    def active(self) -> bool:
        """Discovery is running (a source is attached and its task alive)."""
        return bool(self._tasks) and not self._tasks[0].done()

    def status(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "active": self.active,
            "first_scan_done": self.first_scan_done.is_set(),
            "events_handled": self.events_handled,
            "last_error": self.last_error,
        }

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self.source is None:
            log.info("camera discovery is off")
            self.first_scan_done.set()
            return
        self._stopping = False
        await self._start_source()
        self._tasks.append(start_supervised("camera-discovery", self._run))
        if self.error_recheck_interval:
            self._tasks.append(start_supervised("camera-error-recheck", self._recheck_errors))
        log.info("camera discovery started (%s)", self.mode)

    async def _start_source(self) -> None:
        assert self.source is not None
        try:
            await self.source.start()
        except Exception as exc:
            if self._fallback is None:
                raise
            log.warning(
                "camera event source %s failed to start (%s); falling back", self.source.name, exc
            )
            self.source = self._fallback()
            self._fallback = None
            await self.source.start()

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            while not task.done():  # re-cancel if a library swallowed the cancellation
                await asyncio.wait({task}, timeout=1.0)
                task.cancel()
            if not task.cancelled() and task.exception() is not None:
                log.warning("camera discovery task ended with %r", task.exception())
        self._tasks.clear()
        if self.source is not None:
            with contextlib.suppress(Exception):
                await self.source.close()

    # --- main loop ---------------------------------------------------------------------------

    async def _run(self) -> None:
        assert self.source is not None
        try:
            await self._safe_rescan()
        finally:
            self.first_scan_done.set()
        while not self._stopping:
            try:
                async for event in self.source.events():
                    await self.handle_event(event)
                    if self._stopping:
                        return
                if self._stopping:
                    return
                self.last_error = "event source ended"
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = str(exc)
                log.warning("camera event source %s failed: %s; resyncing", self.mode, exc)
            await asyncio.sleep(self.resync_delay)  # back off before restarting the source
            await self._restart_source()
            await self._safe_rescan()

    async def _restart_source(self) -> None:
        assert self.source is not None
        try:
            await self.source.close()
            await self.source.start()
        except Exception as exc:
            self.last_error = str(exc)
            log.warning("restarting camera event source failed: %s", exc)

    async def _safe_rescan(self) -> None:
        try:
            await self.rescan()
        except Exception as exc:
            self.last_error = str(exc)
            log.warning("camera scan failed: %s", exc)

    async def rescan(self) -> None:
        """Enumerate, probe in parallel, apply in node order, mark missing nodes removed."""
        if self.source is None:
            return
        async with self._lock:
            events = sorted(await self.source.enumerate(), key=node_order)
            results = await asyncio.gather(*(self._bounded_probe(ev.device_path) for ev in events))
            for event, result in zip(events, results, strict=True):
                self._apply(event, result)
            present = {ev.device_path for ev in events}
            for path in sorted(self.registry.active_device_paths() - present):
                self.registry.device_removed(path)

    async def handle_event(self, event: DeviceEvent) -> None:
        """Apply one event; never raises (except cancellation)."""
        try:
            async with self._lock:
                self.events_handled += 1
                if event.action == "remove":
                    self.registry.device_removed(event.device_path)
                elif event.action in ("add", "change"):
                    self._apply(event, await self._bounded_probe(event.device_path))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("handling camera event %s %s failed", event.action, event.device_path)

    async def _recheck_errors(self) -> None:
        """Re-probe cameras in ERROR periodically (a slow device may come good)."""
        assert self.error_recheck_interval is not None
        while True:
            await asyncio.sleep(self.error_recheck_interval)
            for cam in self._error_cameras():
                assert cam.device_path is not None
                await self.handle_event(
                    DeviceEvent("change", cam.device_path, {}, cam.stable_key, cam.serial_key)
                )

    def _error_cameras(self) -> list[Camera]:
        return [
            c
            for c in self.registry.list()
            if c.kind is CameraKind.V4L2 and c.status is CameraStatus.ERROR and c.device_path
        ]

    # --- probing -----------------------------------------------------------------------------

    async def _bounded_probe(self, device_path: str) -> Capabilities | ProbeFailure:
        async with self._parallel:
            return await self.probe(device_path)

    async def probe(self, device_path: str) -> Capabilities | ProbeFailure:
        """Probe with timeout and retries; failures are returned, never raised."""
        return await probe_with_retries(
            self.prober,
            device_path,
            probe_timeout=self.probe_timeout,
            probe_retries=self.probe_retries,
            retry_delay=self.retry_delay,
        )

    def _apply(self, event: DeviceEvent, result: Capabilities | ProbeFailure) -> None:
        if isinstance(result, ProbeFailure):
            self.last_error = f"{event.device_path}: {result.reason}"
            log.warning("camera %s unusable: %s", event.device_path, result.reason)
            self.registry.device_error(
                event.device_path,
                result.reason,
                stable_key=event.stable_key,
                serial_key=event.serial_key,
                name=event.name,
            )
            return
        if not result.is_capture:
            log.debug(
                "%s is not a capture node (caps 0x%08x); skipped",
                event.device_path,
                result.device_caps,
            )
            return
        self.registry.device_added(
            event.device_path, result, stable_key=event.stable_key, serial_key=event.serial_key
        )


def create_discovery(
    registry: CameraRegistry,
    *,
    mode: str = "udev",
    prober: Prober | None = None,
    poll_interval: float = 2.0,
    sys_root: str = "/sys",
    dev_root: str = "/dev",
    udev_control_path: str = DEFAULT_UDEV_CONTROL,
    probe_timeout: float = 5.0,
    probe_retries: int = 1,
) -> Discovery:
    """Composition helper: source for ``mode`` (udev → poll fallback) + V4L2 prober."""
    source = create_event_source(
        mode,
        poll_interval=poll_interval,
        sys_root=sys_root,
        dev_root=dev_root,
        udev_control_path=udev_control_path,
    )

    def fallback() -> EventSource:
        return PollEventSource(poll_interval=poll_interval, sys_root=sys_root, dev_root=dev_root)

    return Discovery(
        source,
        prober or V4L2Prober(),
        registry,
        probe_timeout=probe_timeout,
        probe_retries=probe_retries,
        fallback_source=fallback if isinstance(source, UdevEventSource) else None,
    )
