"""Device events and the event-source protocol of camera discovery (pure, no I/O).

A source (:mod:`~camera_service.cameras.udev_source`, :mod:`~camera_service.cameras.poll_source`
or ``tests/support/fake_devices.FakeEventSource``) turns V4L2 nodes coming and going into
:class:`DeviceEvent` values; this module also holds the identity keys of a physical device and
the diff of two scans.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from camera_service.cameras.ids import node_number


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


def node_order(event: DeviceEvent) -> tuple[int, str]:
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
    return sorted(removes, key=node_order) + sorted(adds, key=node_order)
