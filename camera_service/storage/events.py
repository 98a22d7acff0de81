"""The motion event log: JSON lines in the state directory, at most ``max_events`` kept.

Events are appended when they end (and rewritten when a clip is attached); an event that is
still open lives in memory only, so a crash loses at most the events in progress."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

EVENTS_FILE = "motion_events.jsonl"
_MAX_LINE = 4096  # bytes


@dataclass(frozen=True)
class MotionEvent:
    id: str
    device: str
    start: float  # epoch seconds
    end: float | None
    peak_score: float
    clip: str | None = None
    type: str = "motion"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _parse(line: str) -> MotionEvent | None:
    if len(line) > _MAX_LINE:
        return None
    try:
        data = json.loads(line)
        return MotionEvent(
            str(data["id"]),
            str(data["device"]),
            float(data["start"]),
            None if data.get("end") is None else float(data["end"]),
            float(data["peak_score"]),
            None if data.get("clip") is None else str(data["clip"]),
        )
    except (ValueError, KeyError, TypeError):
        return None


class EventStore:
    def __init__(self, state_dir: Path, max_events: int) -> None:
        self.path = Path(state_dir) / EVENTS_FILE
        self.max_events = max_events
        self._events: dict[str, MotionEvent] = {}
        self._open: dict[str, MotionEvent] = {}
        self._load()

    def _load(self) -> None:
        with (
            contextlib.suppress(FileNotFoundError),
            self.path.open(encoding="utf-8", errors="replace") as handle,
        ):
            for line in handle:
                event = _parse(line)
                if event is not None:
                    self._events[event.id] = event
        self._trim()

    def _trim(self) -> bool:
        if len(self._events) <= self.max_events:
            return False
        keep = sorted(self._events.values(), key=lambda e: e.start)[-self.max_events :]
        self._events = {e.id: e for e in keep}
        return True

    def all(self) -> list[MotionEvent]:
        """Every event (finished and open), newest first."""
        events: Iterable[MotionEvent] = [*self._events.values(), *self._open.values()]
        return sorted(events, key=lambda e: (e.start, e.id), reverse=True)

    def get(self, event_id: str) -> MotionEvent | None:
        return self._open.get(event_id) or self._events.get(event_id)

    def opened(self, event: MotionEvent) -> None:
        self._open[event.id] = event

    def update_open(self, event_id: str, **changes: Any) -> None:
        if event_id in self._open:
            self._open[event_id] = replace(self._open[event_id], **changes)

    def close_sync(self, event: MotionEvent) -> None:
        """The event ended: persist it (blocking)."""
        self._open.pop(event.id, None)
        self._events[event.id] = event
        if self._trim():
            self._rewrite()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(event.to_dict()) + "\n")

    def attach_clip_sync(self, event_id: str, clip: str) -> MotionEvent | None:
        event = self._events.get(event_id)
        if event is None:
            return None
        self._events[event_id] = replace(event, clip=clip)
        self._rewrite()
        return self._events[event_id]

    def _rewrite(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        ordered = sorted(self._events.values(), key=lambda e: e.start)
        tmp.write_text("".join(json.dumps(e.to_dict()) + "\n" for e in ordered), encoding="utf-8")
        os.replace(tmp, self.path)
