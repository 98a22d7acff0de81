"""Per physical camera state kept across replugs and restarts: control values and capture
settings set through the API.

A camera is recognised by the identity that also keeps its id across replugs: ``stable_key``
(the USB port's sysfs path) first, else ``serial_key`` (vendor:product:serial:interface) when
the device moved to another port. One JSON file in the state directory, written atomically.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from camera_service.fsutil import atomic_write

log = logging.getLogger(__name__)

STATE_FILE = "camera_state.json"
_VERSION = 1
MAX_ENTRIES = 256  # remembered cameras; the least recently changed are dropped beyond this
MAX_FILE_BYTES = 1 << 20


@dataclass
class CameraState:
    stable_key: str
    serial_key: str | None = None
    controls: dict[str, int | bool] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)  # pixel_format, resolution, fps

    def to_json(self) -> dict[str, Any]:
        return {
            "stable_key": self.stable_key,
            "serial_key": self.serial_key,
            "controls": dict(self.controls),
            "settings": dict(self.settings),
        }


def _load(path: Path) -> list[CameraState]:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            log.error("%s is larger than %d bytes; camera state not loaded", path, MAX_FILE_BYTES)
            return []
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        log.error("cannot read %s (%s); camera state starts empty", path, exc)
        return []
    out = []
    for item in data.get("cameras", []) if isinstance(data, dict) else []:
        if not isinstance(item, dict) or not isinstance(item.get("stable_key"), str):
            continue
        controls = {
            str(k): v for k, v in (item.get("controls") or {}).items() if isinstance(v, bool | int)
        }
        settings = item.get("settings") if isinstance(item.get("settings"), dict) else {}
        serial = item.get("serial_key") if isinstance(item.get("serial_key"), str) else None
        out.append(CameraState(item["stable_key"], serial, controls, dict(settings or {})))
    return out[-MAX_ENTRIES:]


class CameraStateStore:
    """Load once, look up by identity, save on every change (call :meth:`save` in a thread)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / STATE_FILE
        self._entries = _load(self.path)

    def find(self, stable_key: str | None, serial_key: str | None) -> CameraState | None:
        if stable_key:
            for entry in self._entries:
                if entry.stable_key == stable_key:
                    return entry
        if serial_key:
            for entry in self._entries:
                if entry.serial_key == serial_key:
                    return entry
        return None

    def entry(self, stable_key: str, serial_key: str | None) -> CameraState:
        """The camera's entry (created when new), moved to the most recent position and
        carrying the camera's current keys."""
        found = self.find(stable_key, serial_key)
        if found is None:
            found = CameraState(stable_key, serial_key)
        else:
            self._entries.remove(found)
            found.stable_key = stable_key
            found.serial_key = serial_key or found.serial_key
        self._entries.append(found)
        del self._entries[:-MAX_ENTRIES]
        return found

    def save(self) -> None:
        data = {"version": _VERSION, "cameras": [e.to_json() for e in self._entries]}
        atomic_write(self.path, json.dumps(data, indent=1, sort_keys=True) + "\n")
