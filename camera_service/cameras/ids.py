"""Camera ids of V4L2 devices: ``camera<N>`` after the node number, stable across replugs.

:class:`IdMemory` remembers identity → id (``stable_key``: the sysfs path of the USB
interface, i.e. the port; ``serial_key``: vendor:product:serial:interface when the device
has a serial) so a replug gets the same id back even if the kernel hands out another node
number. Listed cameras own their id; remembered ids of forgotten devices are a preference
that a new device at that node number may take over. Pure logic, no I/O.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Collection
from typing import Any

_NODE_RE = re.compile(r"video(\d+)$")


def node_number(device_path: str) -> int | None:
    """``/dev/video12`` → 12; None for other names."""
    match = _NODE_RE.search(device_path)
    return int(match.group(1)) if match else None


def natural_key(cam_id: str) -> list[Any]:
    """Sort key: ``camera2`` before ``camera10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", cam_id)]


class IdMemory:
    """Identity keys → camera id, the ``max_remembered`` most recently used."""

    def __init__(self, max_remembered: int = 256) -> None:
        self._max_remembered = max_remembered
        self._memory: OrderedDict[str, str] = OrderedDict()

    def remember(self, camera_id: str, *keys: str | None) -> None:
        """The camera now has these identity keys (and no other)."""
        for stale in [k for k, v in self._memory.items() if v == camera_id and k not in keys]:
            del self._memory[stale]
        for key in keys:
            if key:
                self._memory[key] = camera_id
                self._memory.move_to_end(key)
        while len(self._memory) > self._max_remembered:
            self._memory.popitem(last=False)

    def allocate(
        self,
        device_path: str,
        stable_key: str,
        serial_key: str | None,
        listed: Collection[str],
    ) -> str:
        """The id for a new camera on ``device_path``; ``listed``: ids in use."""
        for key in (stable_key, serial_key):
            remembered = self._memory.get(key) if key else None
            if remembered and remembered not in listed:
                return remembered
        number = node_number(device_path)
        if number is not None and f"camera{number}" not in listed:
            return f"camera{number}"
        taken = set(listed) | set(self._memory.values())
        index = number if number is not None else 0
        while f"camera{index}" in taken:
            index += 1
        return f"camera{index}"
