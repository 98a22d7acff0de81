"""Persisted recording modes (``set_recording_mode``): one JSON file in the state directory,
rewritten atomically, read at start-up so every camera resumes its mode."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)

MODES_FILE = "recording_modes.json"
_MAX_FILE = 1 << 20  # bytes
RecordingMode = Literal["off", "continuous", "motion"]
MODES: tuple[RecordingMode, ...] = ("off", "continuous", "motion")


@dataclass(frozen=True)
class ModeSettings:
    mode: RecordingMode
    segment_seconds: int
    pre_roll: float
    post_roll: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _parse(data: Any) -> ModeSettings | None:
    try:
        mode = data["mode"]
        if mode not in MODES:
            return None
        seconds = int(data["segment_seconds"])
        pre, post = float(data["pre_roll"]), float(data["post_roll"])
    except (KeyError, TypeError, ValueError):
        return None
    if not 10 <= seconds <= 3600 or not 0 <= pre <= 300 or not 0 <= post <= 300:
        return None
    return ModeSettings(mode, seconds, pre, post)


class ModeStore:
    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / MODES_FILE
        self._modes = self._load()

    def _load(self) -> dict[str, ModeSettings]:
        try:
            if self.path.stat().st_size > _MAX_FILE:
                log.error("%s is larger than %d bytes, ignored", self.path, _MAX_FILE)
                return {}
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.error("recording modes not loaded from %s: %s", self.path, exc)
            return {}
        modes: dict[str, ModeSettings] = {}
        if isinstance(raw, dict):
            for camera_id, entry in raw.items():
                parsed = _parse(entry)
                if parsed is None:
                    log.error(
                        "recording mode of %s in %s is invalid, ignored", camera_id, self.path
                    )
                    continue
                modes[str(camera_id)] = parsed
        return modes

    def get(self, camera_id: str) -> ModeSettings | None:
        return self._modes.get(camera_id)

    def all(self) -> dict[str, ModeSettings]:
        return dict(self._modes)

    def save_sync(self, camera_id: str, settings: ModeSettings) -> None:
        modes = {**self._modes, camera_id: settings}
        if settings.mode == "off":
            modes.pop(camera_id)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        payload = {cam: s.to_dict() for cam, s in sorted(modes.items())}
        tmp.write_text(json.dumps(payload, indent=1), encoding="utf-8")
        os.replace(tmp, self.path)
        self._modes = modes
