"""Motion events of every camera: stored, published, their clips cut in motion mode.

:class:`MotionEvents` is where the recorders report motion (``MotionHooks`` of
media/continuous.py). An event is stored in the event log when it opens and when it closes
and published as ``motion_event`` (``motion.start`` / ``motion.end``). In motion mode its
footage (pre-roll to post-roll) is held until the clip is cut; the clip is announced by a
second ``motion.end`` carrying its file name.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from camera_service.events import Event, EventBus
from camera_service.media.footage import Footage
from camera_service.storage.events import EventStore, MotionEvent
from camera_service.storage.modes import ModeSettings
from camera_service.storage.names import iso_utc

if TYPE_CHECKING:
    from camera_service.media import clips
    from camera_service.media.motion import MotionEventState

log = logging.getLogger(__name__)

FRAGMENT_SLACK_S = 1.5  # a fragment reaches the disk within about this long


class ClipExport(Protocol):
    async def __call__(
        self, camera_id: str, start: float, end: float, fmt: str, filename: str | None
    ) -> clips.ClipResult: ...


class MotionEvents:
    """Open motion events, their log and announcements, and their clips."""

    def __init__(
        self,
        store: EventStore,
        bus: EventBus,
        footage: Footage,
        settings: Callable[[str], ModeSettings],
        export_clip: ClipExport,
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
    ) -> None:
        self._store = store
        self._bus = bus
        self._footage = footage
        self._settings = settings
        self._export_clip = export_clip
        self._spawn = spawn
        self._open_ids: dict[int, str] = {}

    def motion_started(self, camera_id: str, state: MotionEventState, score: float) -> None:
        event_id = f"{camera_id}-{int(state.start * 1000)}-{secrets.token_hex(2)}"
        state_key = id(state)
        self._open_ids[state_key] = event_id
        event = MotionEvent(event_id, camera_id, state.start, None, round(state.peak, 4))
        self._store.opened(event)
        settings = self._settings(camera_id)
        if settings.mode == "motion":
            self._footage.hold(event_id, camera_id, state.start - settings.pre_roll)
        self._publish("motion.start", event, round(score, 4))

    def motion_ended(self, camera_id: str, state: MotionEventState) -> None:
        event_id = self._open_ids.pop(id(state), None)
        if event_id is None:
            return
        end = state.end if state.end is not None else state.last_active
        event = MotionEvent(event_id, camera_id, state.start, end, round(state.peak, 4))
        self._publish("motion.end", event, event.peak_score)
        settings = self._settings(camera_id)
        self._footage.close(event_id, end + settings.post_roll)
        self._spawn(self._finish_event(event, settings))

    def _publish(self, topic: str, event: MotionEvent, score: float) -> None:
        params: dict[str, Any] = {
            "device": event.device,
            "event_id": event.id,
            "score": score,
            "start_time": iso_utc(event.start),
        }
        if event.end is not None:
            params["end_time"] = iso_utc(event.end)
        self._bus.publish(Event(topic, "motion_event", params, device=event.device))

    async def _finish_event(self, event: MotionEvent, settings: ModeSettings) -> None:
        await asyncio.to_thread(self._store.close_sync, event)
        if settings.mode != "motion" or event.end is None:
            return
        try:
            clip_end = event.end + settings.post_roll
            wait = clip_end + FRAGMENT_SLACK_S - time.time()
            if wait > 0:
                await asyncio.sleep(wait)  # the post-roll has to be recorded first
            stamp = datetime.fromtimestamp(event.start, UTC).strftime("%Y-%m-%d_%H-%M-%S")
            name = f"{event.device}_motion_{stamp}_{event.id[-4:]}.mp4"
            result = await self._export_clip(
                event.device, event.start - settings.pre_roll, clip_end, "mp4", name
            )
            updated = await asyncio.to_thread(
                self._store.attach_clip_sync, event.id, result.path.name
            )
            log.info("motion clip of %s: %s", event.device, result.path.name)
            if updated is not None:
                self._publish_clip(updated)
        except Exception as exc:
            log.warning("motion clip of %s not cut: %s", event.device, exc)
        finally:
            self._footage.release(event.id)

    def _publish_clip(self, event: MotionEvent) -> None:
        params: dict[str, Any] = {
            "device": event.device,
            "event_id": event.id,
            "score": event.peak_score,
            "start_time": iso_utc(event.start),
            "end_time": iso_utc(event.end or event.start),
            "clip": event.clip,
        }
        self._bus.publish(Event("motion.end", "motion_event", params, device=event.device))
