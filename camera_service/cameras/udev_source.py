"""udev event source: a pyudev netlink monitor filtered on ``video4linux``.

Its socket is registered with ``loop.add_reader`` (no polling thread). Needs a running udevd
(``/run/udev/control``); without one, netlink delivers nothing, so discovery falls back to
polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

from camera_service.cameras.device_events import (
    DeviceEvent,
    EventSourceError,
    make_serial_key,
    node_order,
    stable_key_from_sys_path,
)

DEFAULT_UDEV_CONTROL = "/run/udev/control"
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
        return sorted(out, key=node_order)

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
