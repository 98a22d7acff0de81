"""Polling event source: scans ``<dev_root>/video*`` (+ sysfs attributes) and diffs.

Used when udev is unavailable or ``cameras.discovery: poll``. Roots are parameters so tests use
a fake tree.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path

from camera_service.cameras.device_events import (
    DeviceEvent,
    diff_scans,
    make_serial_key,
    node_order,
    stable_key_from_sys_path,
)

log = logging.getLogger(__name__)

_NODE_NAME_RE = re.compile(r"^video\d+$")


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
        return sorted(self._known.values(), key=node_order)

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
