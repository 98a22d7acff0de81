"""Running paths of the fake MediaMTX: what happens after a config write, and media.

Mixed into :class:`~tests.support.fake_mediamtx.FakeMediaMTX` (which owns the state named
below). Each behaviour follows the MediaMTX (v1.20.1) file cited in its docstring:

* a config write takes effect ``apply_delay`` after its 200 (internal/api/api.go answers
  before internal/core/core.go reloads the paths); a change outside ``record*`` closes the
  path and its readers (internal/core/path_manager.go, ``pathConfCanBeUpdated``);
* an RTSP reader of an on-demand path makes it ready ``publish_delay`` later (the publisher
  connected) and ``runOnDemandCloseAfter`` after the last reader left it is idle again
  (internal/core/path.go, on-demand start and close);
* a ready path with ``record: true`` writes a segment (internal/recorder).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from camera_service.mediamtx.durations import parse_go_duration
from tests.support import fake_mediamtx_rules as rules
from tests.support.fake_mediamtx_media import encode_record_path, finalize_segment, segment_head

Json = dict[str, Any]


@dataclass
class PathState:
    """Runtime state of a path that tests can set (readiness, readers, traffic)."""

    ready: bool = False
    readers: int = 0
    bytes_received: int = 0
    bytes_sent: int = 0
    source_type: str = "rtspSession"
    ready_time: str | None = None
    tracks: list[str] = field(default_factory=lambda: ["H264"])


class RunningPaths:
    """Runtime behaviour of the fake's paths (see the module)."""

    config_paths: dict[str, Json]
    path_states: dict[str, PathState]
    rtsp_readers: dict[str, set[asyncio.StreamWriter]]
    segments: dict[str, tuple[Path, datetime]]
    segment_files: list[Path]
    record_errors: list[str]
    unpublishable: set[str]
    apply_delay: float
    publish_delay: float
    _timers: set[asyncio.Task[None]]
    _answered: asyncio.Event

    set_path_state: Callable[..., PathState]
    _runtime_names: Callable[[], list[str]]

    def _later(self, delay: float, action: Callable[[], None]) -> None:
        async def run() -> None:
            await asyncio.sleep(delay)  # the simulated server's own latency
            action()
            self._answered.set()

        task = asyncio.create_task(run())
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)

    def _apply_conf(self, name: str, old: Json | None) -> None:
        new = self.config_paths.get(name)
        if new is None:
            return
        if old is not None and rules.restarts(old, new):
            self._close_path(name)
            return
        self._update_recording(name)

    def _close_path(self, name: str) -> None:
        """internal/core/path.go: a closed path drops its readers and its recorder."""
        for writer in self.rtsp_readers.pop(name, set()):
            writer.close()
        self.path_states.pop(name, None)
        self._end_segment(name)

    @staticmethod
    def _on_demand(conf: Json) -> bool:
        if conf.get("runOnDemand"):
            return True
        return conf.get("source", "publisher") != "publisher" and bool(conf.get("sourceOnDemand"))

    def _reader_connected(self, name: str, writer: asyncio.StreamWriter) -> bool:
        if name not in self._runtime_names():
            return False
        self.rtsp_readers.setdefault(name, set()).add(writer)
        conf = self.config_paths[name]
        state = self.path_states.get(name)
        if self._on_demand(conf) and (state is None or not state.ready):
            self._later(self.publish_delay, lambda: self._published(name))
        self._answered.set()
        return True

    def _published(self, name: str) -> None:
        if self.rtsp_readers.get(name) and name in self.config_paths:
            if name in self.unpublishable:
                return
            self.set_path_state(name, ready=True)
            self._update_recording(name)

    def _reader_left(self, name: str, writer: asyncio.StreamWriter) -> None:
        readers = self.rtsp_readers.get(name)
        if readers is None or writer not in readers:
            return
        readers.discard(writer)
        self._answered.set()
        conf = self.config_paths.get(name)
        if readers or conf is None or not self._on_demand(conf):
            return
        key = "runOnDemandCloseAfter" if conf.get("runOnDemand") else "sourceOnDemandCloseAfter"
        close_after = parse_go_duration(conf.get(key) or "0s")
        self._later(close_after, lambda: self._unpublish(name))

    def _unpublish(self, name: str) -> None:
        if not self.rtsp_readers.get(name) and name in self.path_states:
            self.path_states[name].ready = False
            self.path_states[name].ready_time = None
            self._end_segment(name)

    def _update_recording(self, name: str) -> None:
        """internal/recorder: record while the path is ready and ``record`` is on."""
        conf = self.config_paths.get(name) or {}
        state = self.path_states.get(name)
        if conf.get("record") and state is not None and state.ready:
            if name not in self.segments:
                self._begin_segment(name, conf)
        else:
            self._end_segment(name)

    def _begin_segment(self, name: str, conf: Json) -> None:
        start = datetime.now(UTC)
        ext = ".mp4" if conf.get("recordFormat", "fmp4") == "fmp4" else ".ts"
        target = Path(encode_record_path(conf.get("recordPath", ""), name, start) + ext)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(segment_head(0) + bytes(256))
        except OSError as exc:  # MediaMTX logs it and records nothing
            self.record_errors.append(f"{name}: {exc}")
            return
        self.segments[name] = (target, start)
        self.segment_files.append(target)

    def _end_segment(self, name: str) -> None:
        segment = self.segments.pop(name, None)
        if segment is not None:
            target, start = segment
            elapsed = datetime.now(UTC) - start
            finalize_segment(str(target), int(elapsed.total_seconds() * 1000))
