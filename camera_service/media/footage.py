"""Footage that segment housekeeping must keep: held windows and files being read.

A window ``[start, end]`` (epoch s; ``end`` None: open) of a camera's footage is held while
an event's clip is not cut yet or a recording is to be cut from segments at its end; a file
is being read while a clip is cut from it. Retention, motion-buffer trimming and roll-over
skip what is held here. Pure bookkeeping, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from camera_service.storage.segments import Segment


@dataclass
class FootageWindow:
    """Footage something still needs: [start, end] in epoch s."""

    device: str
    start: float
    end: float | None

    def covers(self, segment: Segment) -> bool:
        return (
            segment.device == self.device
            and segment.end > self.start
            and (self.end is None or segment.start < self.end)
        )


class Footage:
    """The held windows (by key) and the files being read (with a count per file)."""

    def __init__(self) -> None:
        self._windows: dict[str, FootageWindow] = {}
        self._reading: dict[Path, int] = {}

    def hold(self, key: str, device: str, start: float) -> None:
        """Hold the camera's footage from ``start`` on (until :meth:`close` / :meth:`release`)."""
        self._windows[key] = FootageWindow(device, start, None)

    def close(self, key: str, end: float) -> None:
        """The window held as ``key`` (if any) ends at ``end``."""
        window = self._windows.get(key)
        if window is not None:
            window.end = end

    def release(self, key: str) -> None:
        self._windows.pop(key, None)

    def held(self, segment: Segment) -> bool:
        return any(w.covers(segment) for w in self._windows.values())

    def reading(self) -> set[Path]:
        """Files a clip is being cut from now."""
        return set(self._reading)

    @contextmanager
    def read(self, paths: Iterable[Path]) -> Iterator[None]:
        """Mark ``paths`` as being read for the duration of the block."""
        held = list(paths)
        for path in held:
            self._reading[path] = self._reading.get(path, 0) + 1
        try:
            yield
        finally:
            for path in held:
                left = self._reading.get(path, 1) - 1
                if left <= 0:
                    self._reading.pop(path, None)
                else:
                    self._reading[path] = left

    def buffer_expired(
        self, camera_id: str, segments: list[Segment], horizon: float, chosen: set[Path]
    ) -> list[Segment]:
        """Motion-buffer segments (run ``m…``) that ended before ``horizon``, are not in
        ``chosen`` and that no held window of the camera needs."""
        windows = [w for w in self._windows.values() if w.device == camera_id]
        expired = []
        for s in segments:
            if s.run[0] != "m" or s.path in chosen or s.end >= horizon:
                continue
            needed = any(s.end > w.start and (w.end is None or s.start < w.end) for w in windows)
            if not needed:
                expired.append(s)
        return expired
