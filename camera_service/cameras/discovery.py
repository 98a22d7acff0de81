"""Camera discovery: device events (udev, polling, or injected) → probe → registry.

Event sources implement :class:`EventSource`:

* :class:`UdevEventSource` — pyudev netlink monitor filtered on ``video4linux``; its socket is
  registered with ``loop.add_reader`` (no polling thread). Needs a running udevd
  (``/run/udev/control``); without one, netlink delivers nothing, so we fall back to polling.
* :class:`PollEventSource` — scans ``<dev_root>/video*`` (+ sysfs attributes) every
  ``poll_interval`` seconds and diffs. Roots are parameters so tests use a fake tree.
* ``tests/support/fake_devices.FakeEventSource`` — plug/unplug fake devices in tests.

:class:`Discovery` does the initial scan (probes in parallel, applied in node order), sets
``first_scan_done``, then handles events one at a time. Every probe runs off the event loop
with a timeout and retries; a failure lists the device as ERROR with a reason and never stops
discovery. When the source fails (udev monitor error, queue overflow) discovery logs it,
restarts the source, rescans and reconciles the registry with what is present.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from camera_service.cameras.model import Camera, CameraKind, CameraStatus, Capabilities
from camera_service.cameras.registry import CameraRegistry, node_number
from camera_service.cameras.v4l2 import V4L2Prober
from camera_service.cameras.v4l2_abi import DeviceVanishedError, ProbeError
from camera_service.supervise import start_supervised

log = logging.getLogger(__name__)

DiscoveryMode = Literal["udev", "poll", "off"]
DEFAULT_UDEV_CONTROL = "/run/udev/control"
_NODE_NAME_RE = re.compile(r"^video\d+$")
_UDEV_PROPERTIES = (
    "ID_V4L_PRODUCT",
    "ID_V4L_CAPABILITIES",
    "ID_PATH",
    "ID_SERIAL",
    "ID_SERIAL_SHORT",
    "ID_VENDOR_ID",
    "ID_MODEL_ID",
    "ID_USB_INTERFACE_NUM",
    "ID_USB_DRIVER",
    "MAJOR",
    "MINOR",
)


# --- events ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    """A V4L2 node appeared (``add``), changed (``change``) or went away (``remove``).

    ``stable_key`` names the physical device (sysfs path of its USB interface: stable per
    port), ``serial_key`` its vendor:product:serial:interface when it has a serial.
    """

    action: str
    device_path: str
    attrs: Mapping[str, str] = field(default_factory=dict)
    stable_key: str | None = None
    serial_key: str | None = None

    @property
    def name(self) -> str | None:
        return self.attrs.get("name") or self.attrs.get("ID_V4L_PRODUCT") or None

    def with_action(self, action: str) -> DeviceEvent:
        return DeviceEvent(action, self.device_path, self.attrs, self.stable_key, self.serial_key)


class EventSourceError(Exception):
    """The source lost track of devices (monitor failure, dropped events)."""


class EventSource(Protocol):
    name: str

    async def start(self) -> None:
        """Begin listening (before :meth:`enumerate`, so nothing is missed in between)."""

    async def enumerate(self) -> list[DeviceEvent]:
        """``add`` events for the nodes present now."""

    def events(self) -> AsyncIterator[DeviceEvent]:
        """Live events; raises :class:`EventSourceError` when it lost track."""

    async def close(self) -> None:
        """Stop listening; :meth:`start` may be called again afterwards."""


class Prober(Protocol):
    async def probe(self, device_path: str) -> Capabilities:
        """Capabilities of a node; raises ProbeError / DeviceVanishedError."""


# --- pure helpers ----------------------------------------------------------------------------


def stable_key_from_sys_path(node_sys_path: str, sys_root: str = "/sys") -> str:
    """``/sys/devices/…/1-2:1.0/video4linux/video0`` → ``devices/…/1-2:1.0`` (the parent)."""
    parent = os.path.dirname(os.path.dirname(os.path.normpath(node_sys_path)))
    root = os.path.normpath(sys_root)
    if parent.startswith(root + os.sep):
        return parent[len(root) + 1 :]
    return parent


def make_serial_key(
    vendor: str | None, product: str | None, serial: str | None, interface: str | None
) -> str | None:
    """``vendor:product:serial:interface`` or None when the device has no serial."""
    if not serial or not vendor or not product:
        return None
    return f"{vendor}:{product}:{serial}:{interface or ''}".lower()


def event_from_udev(
    action: str,
    device_node: str | None,
    sys_path: str,
    properties: Mapping[str, str],
    sys_root: str = "/sys",
) -> DeviceEvent | None:
    """A udev device record → :class:`DeviceEvent` (None when it has no /dev node)."""
    if not device_node or action not in ("add", "remove", "change"):
        return None
    attrs = {k: str(properties[k]) for k in _UDEV_PROPERTIES if k in properties}
    serial = make_serial_key(
        attrs.get("ID_VENDOR_ID"),
        attrs.get("ID_MODEL_ID"),
        attrs.get("ID_SERIAL_SHORT"),
        attrs.get("ID_USB_INTERFACE_NUM"),
    )
    return DeviceEvent(
        action, device_node, attrs, stable_key_from_sys_path(sys_path, sys_root), serial
    )


def _read_attr(directory: Path, name: str) -> str | None:
    try:
        return (directory / name).read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


def read_sysfs_node(
    node_name: str, sys_root: Path
) -> tuple[dict[str, str], str | None, str | None]:
    """(attrs, stable_key, serial_key) of ``<sys_root>/class/video4linux/<node_name>``."""
    node_dir = sys_root / "class" / "video4linux" / node_name
    if not node_dir.exists():
        return {}, None, None
    attrs = {k: v for k in ("name", "index", "dev") if (v := _read_attr(node_dir, k)) is not None}
    real = node_dir.resolve()
    interface_dir = real.parent.parent
    usb_dir = interface_dir.parent
    serial = make_serial_key(
        _read_attr(usb_dir, "idVendor"),
        _read_attr(usb_dir, "idProduct"),
        _read_attr(usb_dir, "serial"),
        _read_attr(interface_dir, "bInterfaceNumber"),
    )
    return attrs, stable_key_from_sys_path(str(real), str(sys_root.resolve())), serial


def scan_nodes(dev_root: Path, sys_root: Path) -> dict[str, DeviceEvent]:
    """``add`` events for every ``<dev_root>/videoN`` present, with sysfs details if any."""
    found: dict[str, DeviceEvent] = {}
    try:
        names = sorted(p.name for p in dev_root.iterdir() if _NODE_NAME_RE.match(p.name))
    except OSError as exc:
        log.warning("cannot list %s: %s", dev_root, exc)
        return found
    for name in names:
        attrs, key, serial = read_sysfs_node(name, sys_root)
        path = str(dev_root / name)
        found[path] = DeviceEvent("add", path, attrs, key, serial)
    return found


def _node_order(event: DeviceEvent) -> tuple[int, str]:
    number = node_number(event.device_path)
    return (number if number is not None else 1 << 30), event.device_path


def diff_scans(old: Mapping[str, DeviceEvent], new: Mapping[str, DeviceEvent]) -> list[DeviceEvent]:
    """Events turning ``old`` into ``new``: removes first, then adds, each in node order.

    A node whose identity changed (other major:minor or physical device) is removed and
    re-added.
    """

    def fingerprint(ev: DeviceEvent) -> tuple[str | None, str | None]:
        return ev.attrs.get("dev"), ev.stable_key

    removes = [
        ev.with_action("remove")
        for path, ev in old.items()
        if path not in new or fingerprint(new[path]) != fingerprint(ev)
    ]
    adds = [
        ev
        for path, ev in new.items()
        if path not in old or fingerprint(old[path]) != fingerprint(ev)
    ]
    return sorted(removes, key=_node_order) + sorted(adds, key=_node_order)


# --- poll source -----------------------------------------------------------------------------


class PollEventSource:
    """Periodic scan of ``<dev_root>/video*`` and ``<sys_root>/class/video4linux``."""

    name = "poll"

    def __init__(
        self,
        *,
        poll_interval: float = 2.0,
        sys_root: str | Path = "/sys",
        dev_root: str | Path = "/dev",
    ) -> None:
        self.poll_interval = poll_interval
        self.sys_root = Path(sys_root)
        self.dev_root = Path(dev_root)
        self._known: dict[str, DeviceEvent] = {}

    async def start(self) -> None:
        return None

    async def _scan(self) -> dict[str, DeviceEvent]:
        return await asyncio.to_thread(scan_nodes, self.dev_root, self.sys_root)

    async def enumerate(self) -> list[DeviceEvent]:
        self._known = await self._scan()
        return sorted(self._known.values(), key=_node_order)

    async def events(self) -> AsyncIterator[DeviceEvent]:
        while True:
            await asyncio.sleep(self.poll_interval)
            current = await self._scan()
            changes = diff_scans(self._known, current)
            self._known = current
            for event in changes:
                yield event

    async def close(self) -> None:
        return None


# --- udev source -----------------------------------------------------------------------------


class UdevEventSource:
    """pyudev monitor on ``video4linux``, read from the event loop via ``add_reader``."""

    name = "udev"

    def __init__(self, *, sys_root: str = "/sys", queue_size: int = 1024) -> None:
        self.sys_root = sys_root
        self._queue: asyncio.Queue[DeviceEvent | EventSourceError] = asyncio.Queue(queue_size)
        self._context: Any = None
        self._monitor: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._overflowed = False

    @staticmethod
    def unavailable_reason(control_path: str = DEFAULT_UDEV_CONTROL) -> str | None:
        """Why udev discovery cannot work here, or None when it can."""
        try:
            import pyudev

            pyudev.Context()
        except ImportError as exc:  # pragma: no cover - pyudev is a dependency
            return f"pyudev not importable ({exc})"
        except Exception as exc:
            return f"libudev unusable ({exc})"
        if not os.path.exists(control_path):
            return f"udevd is not running ({control_path} missing)"
        return None

    async def start(self) -> None:
        import pyudev

        self._loop = asyncio.get_running_loop()
        self._context = pyudev.Context()
        monitor = pyudev.Monitor.from_netlink(self._context)
        monitor.filter_by("video4linux")
        monitor.start()
        self._monitor = monitor
        self._overflowed = False
        self._drain()
        self._loop.add_reader(monitor.fileno(), self._on_readable)

    async def enumerate(self) -> list[DeviceEvent]:
        context = self._context
        if context is None:
            raise EventSourceError("udev source not started")
        return await asyncio.to_thread(self._enumerate_blocking, context)

    def _enumerate_blocking(self, context: Any) -> list[DeviceEvent]:
        out: list[DeviceEvent] = []
        for device in context.list_devices(subsystem="video4linux"):
            event = self._convert("add", device)
            if event is not None:
                name = device.attributes.get("name")
                if isinstance(name, bytes):
                    event = DeviceEvent(
                        "add",
                        event.device_path,
                        {**event.attrs, "name": name.decode(errors="replace")},
                        event.stable_key,
                        event.serial_key,
                    )
                out.append(event)
        return sorted(out, key=_node_order)

    def _convert(self, action: str, device: Any) -> DeviceEvent | None:
        return event_from_udev(
            action, device.device_node, device.sys_path, dict(device.properties), self.sys_root
        )

    def _on_readable(self) -> None:
        monitor = self._monitor
        if monitor is None:
            return
        while True:
            try:
                device = monitor.poll(timeout=0)
            except Exception as exc:
                self._push(EventSourceError(f"udev monitor error: {exc}"))
                self._detach()
                return
            if device is None:
                return
            event = self._convert(device.action or "", device)
            if event is not None:
                self._push(event)

    def _push(self, item: DeviceEvent | EventSourceError) -> None:
        if self._overflowed:
            return
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            # events were lost: drop the backlog and make discovery rescan instead
            self._overflowed = True
            self._drain()
            self._queue.put_nowait(EventSourceError("udev event queue overflowed"))

    def _drain(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()

    def _detach(self) -> None:
        if self._loop is not None and self._monitor is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._monitor.fileno())
        self._monitor = None

    async def events(self) -> AsyncIterator[DeviceEvent]:
        while True:
            item = await self._queue.get()
            if isinstance(item, EventSourceError):
                raise item
            yield item

    async def close(self) -> None:
        self._detach()


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


@dataclass(frozen=True, slots=True)
class ProbeFailure:
    reason: str
    vanished: bool = False


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
            events = sorted(await self.source.enumerate(), key=_node_order)
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
        reason = "probe failed"
        for attempt in range(self.probe_retries + 1):
            if attempt:
                await asyncio.sleep(self.retry_delay)  # back off between attempts
            try:
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
                # that arrives as the probe completes, which would make stop() hang
                async with asyncio.timeout(self.probe_timeout):
                    return await self.prober.probe(device_path)
            except DeviceVanishedError as exc:
                return ProbeFailure(exc.reason, vanished=True)
            except ProbeError as exc:
                reason = exc.reason
            except TimeoutError:
                reason = f"probe timed out after {self.probe_timeout:g} s"
            except Exception as exc:
                log.exception("unexpected probe failure on %s", device_path)
                reason = f"probe failed: {exc}"
            log.info(
                "probing %s failed (attempt %d/%d): %s",
                device_path,
                attempt + 1,
                self.probe_retries + 1,
                reason,
            )
        return ProbeFailure(reason)

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
