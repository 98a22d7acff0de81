"""Recording modes of every camera: continuous and motion recording, segments, clips, events.

* ``set_recording_mode`` stores the mode (storage/modes.py) and starts or stops the camera's
  :class:`~camera_service.media.continuous.CameraRecorder`; stored modes resume at start-up and
  whenever the camera (re)connects.
* Housekeeping every few seconds: per-camera ``retain_days`` / ``retain_gb`` over continuous
  segments; in motion mode the segment buffer keeps only what a pre-roll or an event needs.
* :meth:`NvrManager.rollover` frees the oldest segments when the disk reaches the blocking
  threshold (``storage.when_full: delete_oldest``).
* Nothing is deleted while it is written (a segment not closed yet), cut into a clip,
  held for an event or a recording (:mod:`.footage`) or downloaded (``in_use``).
* Motion events are logged, published and cut into clips by :mod:`.motion_events`.

The recorder (media/continuous.py, with motion.py) and the clip cutter (clips.py) are
imported when the first recorder starts, a killed run is closed or a clip is exported: a
node where no camera has a recording mode does not load them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from camera_service.config import Config, MotionConfig
from camera_service.events import EventBus
from camera_service.media.errors import InvalidTarget
from camera_service.media.footage import Footage
from camera_service.media.motion_events import FRAGMENT_SLACK_S, MotionEvents
from camera_service.media.recorder_env import RecorderEnv, SourceFn
from camera_service.storage import segments as seg
from camera_service.storage.errors import NotFound
from camera_service.storage.events import EventStore
from camera_service.storage.files import FileStore
from camera_service.storage.modes import ModeSettings, ModeStore, RecordingMode
from camera_service.storage.names import generated_filename, with_extension
from camera_service.storage.usage import (
    DiskUsageFn,
    InsufficientStorage,
    check_can_write,
    system_disk_usage,
)
from camera_service.supervise import start_supervised

if TYPE_CHECKING:
    from camera_service.media import clips
    from camera_service.media.continuous import CameraRecorder

log = logging.getLogger(__name__)

HOUSEKEEPING_S = 3.0
CLIP_TIMEOUT_S = 300.0
STOP_GRACE_S = 1.0  # a fragment reaches the disk within about a second


@dataclass
class NvrManager:
    config: Config
    env: RecorderEnv
    modes: ModeStore
    events: EventStore
    files: FileStore
    bus: EventBus
    source_for: SourceFn
    block_percent: float = 95.0
    disk_usage: DiskUsageFn = system_disk_usage
    in_use: Callable[[], set[Path]] = field(default=lambda: set())
    on_reader_change: Callable[[str], None] = field(default=lambda camera_id: None)
    _recorders: dict[str, CameraRecorder] = field(default_factory=dict)
    _footage: Footage = field(default_factory=Footage)
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    _housekeeper: asyncio.Task[None] | None = None
    paused_for_storage: bool = False
    deleted_segments: int = 0

    def __post_init__(self) -> None:
        self._motion = MotionEvents(
            self.events, self.bus, self._footage, self.settings, self.export_clip, self._spawn
        )

    # -- queries ---------------------------------------------------------------------------

    @property
    def root(self) -> Path:
        return self.env.root

    def settings(self, camera_id: str) -> ModeSettings:
        stored = self.modes.get(camera_id)
        if stored is not None:
            return stored
        cfg = self.config.continuous
        return ModeSettings("off", cfg.segment_seconds, cfg.pre_roll, cfg.post_roll)

    def recorder(self, camera_id: str) -> CameraRecorder | None:
        return self._recorders.get(camera_id)

    def is_active(self, camera_id: str) -> bool:
        rec = self._recorders.get(camera_id)
        return rec is not None and rec.active

    def has_work(self) -> bool:
        return bool(self._recorders)

    def latest_frame(self, camera_id: str) -> Path | None:
        rec = self._recorders.get(camera_id)
        return rec.frame_path if rec is not None and rec.active else None

    def reads_device(self, camera_id: str) -> bool:
        rec = self._recorders.get(camera_id)
        return (
            rec is not None and rec.reads_device and rec.handle is not None and rec.handle.running
        )

    def protected(self) -> set[Path]:
        """Files that must not be deleted now: being read (clips) or downloaded."""
        return {*self._footage.reading(), *self.in_use()}

    def motion_config(self, camera_id: str, mode: RecordingMode) -> MotionConfig | None:
        cfg = self.config.motion_for(camera_id)
        return cfg if mode == "motion" or cfg.enabled else None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        await self._recover_runs()
        for camera_id, settings in self.modes.all().items():
            if settings.mode != "off":
                self._ensure(camera_id, settings)
        self._housekeeper = start_supervised("nvr-housekeeping", self._housekeeping)

    async def stop(self) -> None:
        if self._housekeeper is not None:
            self._housekeeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeper
            self._housekeeper = None
        recorders, self._recorders = list(self._recorders.values()), {}
        await asyncio.gather(*(r.stop() for r in recorders), return_exceptions=True)
        if self._tasks:  # events that just ended are stored first; their clips cannot wait
            await asyncio.wait(set(self._tasks), timeout=STOP_GRACE_S)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _recover_runs(self) -> None:
        """Runs left by a killed daemon: list their last segments (probed)."""
        for camera_id in await asyncio.to_thread(seg.cameras_with_segments, self.root):
            directory = seg.camera_dir(self.root, camera_id)
            for run in await asyncio.to_thread(seg.runs_in, directory):
                from camera_service.media.continuous import close_run  # lazily, see above

                await close_run(self.env.ffprobe, directory, run)

    # -- modes -----------------------------------------------------------------------------

    async def set_mode(self, camera_id: str, settings: ModeSettings) -> ModeSettings:
        await asyncio.to_thread(self.modes.save_sync, camera_id, settings)
        current = self._recorders.get(camera_id)
        if current is not None:
            same = current.settings == settings and current.motion == self.motion_config(
                camera_id, settings.mode
            )
            if same:
                return settings
            await self._drop(camera_id)
        if settings.mode != "off":
            self._ensure(camera_id, settings)
        return settings

    def _ensure(self, camera_id: str, settings: ModeSettings) -> None:
        if camera_id in self._recorders or self.paused_for_storage:
            return
        from camera_service.media.continuous import CameraRecorder  # lazily, see the module doc

        recorder = CameraRecorder(
            self.env,
            camera_id,
            settings,
            self.source_for,
            self.motion_config(camera_id, settings.mode),
            self._motion,
            on_state=lambda: self._state_changed(camera_id),
        )
        self._recorders[camera_id] = recorder
        recorder.start()

    async def _state_changed(self, camera_id: str) -> None:
        self.on_reader_change(camera_id)

    async def _drop(self, camera_id: str) -> None:
        recorder = self._recorders.pop(camera_id, None)
        if recorder is not None:
            await recorder.stop()
            self.on_reader_change(camera_id)

    def camera_changed(self, camera_id: str, connected: bool) -> None:
        """Registry listener: a camera came (back) or went away."""
        recorder = self._recorders.get(camera_id)
        if recorder is None:
            return
        if connected:
            recorder.wake()
        elif recorder.handle is not None and recorder.handle.running:
            self._spawn(self.env.supervisor.stop(recorder.handle, self.env.stop_policy))

    async def pause_all(self) -> None:
        """storage.when_full: stop — stop writing until the disk has room again."""
        self.paused_for_storage = True
        for camera_id in list(self._recorders):
            await self._drop(camera_id)

    def _resume_all(self) -> None:
        self.paused_for_storage = False
        for camera_id, settings in self.modes.all().items():
            if settings.mode != "off":
                self._ensure(camera_id, settings)

    # -- segments --------------------------------------------------------------------------

    async def segments(self, camera_id: str) -> list[seg.Segment]:
        return await asyncio.to_thread(seg.scan_camera, self.root, camera_id)

    async def all_segments(self) -> list[seg.Segment]:
        def scan() -> list[seg.Segment]:
            found: list[seg.Segment] = []
            for camera_id in seg.cameras_with_segments(self.root):
                found += seg.scan_camera(self.root, camera_id)
            return found

        return await asyncio.to_thread(scan)

    async def segment_path(self, name: str) -> Path:
        """The file of a listed segment (downloads); storage NotFound otherwise."""
        match = seg.SEGMENT_RE.match(name)
        if match is None:
            raise NotFound("segments", name)
        path = seg.camera_dir(self.root, match["device"]) / name
        if not await asyncio.to_thread(_regular_file, path):
            raise NotFound("segments", name)
        return path

    def hold_footage(self, camera_id: str, start: float) -> str:
        """Keep the camera's footage from ``start`` on (a recording cut from segments at its
        end); returns the key for :meth:`release_footage`."""
        key = f"hold-{camera_id}-{secrets.token_hex(4)}"
        self._footage.hold(key, camera_id, start)
        return key

    def release_footage(self, key: str) -> None:
        self._footage.release(key)

    async def wait_footage(self, camera_id: str, until: float, timeout: float) -> None:
        """Wait (at most ``timeout`` s) until the camera's segments reach ``until`` on disk,
        or its recorder stopped."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline and self.is_active(camera_id):
            segments = await self.segments(camera_id)
            if segments and segments[-1].end >= until:
                return
            await asyncio.sleep(0.1)

    def has_footage(self, camera_id: str) -> bool:
        return seg.camera_dir(self.root, camera_id).is_dir()

    async def rollover(self, need_bytes: int) -> tuple[int, int]:
        """Delete the oldest closed segments of any camera until ``need_bytes`` are freed."""
        segments = [
            s for s in await self.all_segments() if s.complete and not self._footage.held(s)
        ]
        protected = self.protected()
        doomed = seg.plan_rollover(segments, need_bytes, protected)
        count, freed = await asyncio.to_thread(seg.delete_segments, doomed, self.protected())
        if count:
            self.deleted_segments += count
            log.warning("disk full: deleted the %d oldest segments (%d bytes)", count, freed)
        return count, freed

    # -- clips -----------------------------------------------------------------------------

    async def export_clip(
        self,
        camera_id: str,
        start: float,
        end: float,
        fmt: str = "mp4",
        filename: str | None = None,
    ) -> clips.ClipResult:
        from camera_service.media import clips  # lazily, see the module doc

        if fmt not in clips.CLIP_FORMATS:
            raise InvalidTarget(f"unsupported clip format: {fmt!r}")
        plan = clips.plan_clip(await self.segments(camera_id), start, end)
        directory = self.files.directory("recordings")
        ext = clips.CLIP_FORMATS[fmt]
        now = datetime.fromtimestamp(start, UTC)
        name = (
            with_extension(filename, ext)
            if filename is not None
            else generated_filename(
                f"{camera_id}_clip", ext, now, lambda n: (directory / n).exists()
            )
        )
        output = directory / name
        if await asyncio.to_thread(output.exists):
            raise InvalidTarget(f"file already exists: {name}")
        with self._footage.read(part.path for part in plan.segments):
            result = await clips.export(
                self.env.supervisor,
                self.env.ffmpeg,
                self.env.ffprobe,
                plan,
                output,
                fmt,
                CLIP_TIMEOUT_S,
            )
        await self.files.register("recordings", name, camera_id)
        return result

    # -- housekeeping ----------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        while True:
            try:
                await self.housekeep_once()
            except Exception:
                log.exception("segment housekeeping failed")
            await asyncio.sleep(HOUSEKEEPING_S)

    async def housekeep_once(self, now: float | None = None) -> int:
        """Retention and motion-buffer trimming; returns the number of segments deleted."""
        now = time.time() if now is None else now
        deleted = 0
        if self.paused_for_storage:
            with contextlib.suppress(InsufficientStorage, OSError):
                await check_can_write(self.root, self.block_percent, self.disk_usage)
                log.info("disk has room again: continuous recording resumes")
                self._resume_all()
        for camera_id in await asyncio.to_thread(seg.cameras_with_segments, self.root):
            segments = [
                s
                for s in await self.segments(camera_id)
                if s.complete and not self._footage.held(s)
            ]
            protected = self.protected()
            limits = self.config.continuous.for_camera(camera_id)
            doomed = seg.plan_retention(
                segments,
                now=now,
                retain_days=limits.retain_days,
                retain_gb=limits.retain_gb,
                protected=protected,
            )
            doomed += self._buffer_expired(camera_id, segments, now, {s.path for s in doomed})
            if doomed:
                count, _freed = await asyncio.to_thread(
                    seg.delete_segments, doomed, self.protected()
                )
                deleted += count
        self.deleted_segments += deleted
        return deleted

    def _buffer_expired(
        self, camera_id: str, segments: list[seg.Segment], now: float, chosen: set[Path]
    ) -> list[seg.Segment]:
        """Motion-mode buffer segments no pre-roll or pending clip can need any more."""
        horizon = now - self.settings(camera_id).pre_roll - FRAGMENT_SLACK_S
        return self._footage.buffer_expired(camera_id, segments, horizon, chosen)

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[Any] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- helpers for the API ---------------------------------------------------------------

    def mode_view(self, camera_id: str) -> dict[str, Any]:
        settings = self.settings(camera_id)
        return {
            "device": camera_id,
            **settings.to_dict(),
            "active": self.is_active(camera_id),
        }


def _regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def settings_with(base: ModeSettings, **changes: Any) -> ModeSettings:
    return replace(base, **{k: v for k, v in changes.items() if v is not None})
