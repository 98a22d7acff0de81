"""Camera change notifications: topics, listeners, which change is worth which topic.

Listeners ``(camera, topic)`` get immutable snapshots with topic ``camera.connected``
(became CONNECTED), ``camera.disconnected`` (became DISCONNECTED) or
``camera.status_change`` (became ERROR, or details of a connected camera changed). Forget
listeners ``(camera)`` are the internal ``camera.forgotten`` hook (e.g. MediaMTX path
removal). Listener exceptions are logged and swallowed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from camera_service.cameras.model import Camera, CameraStatus

log = logging.getLogger(__name__)

TOPIC_CONNECTED = "camera.connected"
TOPIC_DISCONNECTED = "camera.disconnected"
TOPIC_STATUS_CHANGE = "camera.status_change"
TOPIC_FORGOTTEN = "camera.forgotten"  # internal only, delivered to forget listeners
PUBLIC_TOPICS = frozenset({TOPIC_CONNECTED, TOPIC_DISCONNECTED, TOPIC_STATUS_CHANGE})

ChangeListener = Callable[[Camera, str], None]
ForgetListener = Callable[[Camera], None]


class CameraListeners:
    """The change and forget listeners of the registry."""

    def __init__(
        self, on_change: ChangeListener | None = None, on_forgotten: ForgetListener | None = None
    ) -> None:
        self._listeners: list[ChangeListener] = [on_change] if on_change else []
        self._forget_listeners: list[ForgetListener] = [on_forgotten] if on_forgotten else []

    def add(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    def add_forget(self, listener: ForgetListener) -> None:
        self._forget_listeners.append(listener)

    def notify(self, camera: Camera, topic: str) -> None:
        for listener in list(self._listeners):
            try:
                listener(camera, topic)
            except Exception:
                log.exception("camera listener failed on %s for %s", topic, camera.id)

    def notify_forgotten(self, camera: Camera) -> None:
        for listener in list(self._forget_listeners):
            try:
                listener(camera)
            except Exception:
                log.exception("camera forget listener failed for %s", camera.id)


def topic_for(previous: Camera | None, cam: Camera) -> str | None:
    """The topic of a stored camera that was ``previous``; None: nothing visible changed."""
    if cam.status is CameraStatus.CONNECTED:
        if previous is None or previous.status is not CameraStatus.CONNECTED:
            return TOPIC_CONNECTED
        return TOPIC_STATUS_CHANGE if _visible_change(previous, cam) else None
    if cam.status is CameraStatus.ERROR:
        if previous is None or previous.status is not CameraStatus.ERROR:
            return TOPIC_STATUS_CHANGE
        return TOPIC_STATUS_CHANGE if previous.error != cam.error else None
    return TOPIC_DISCONNECTED


def _visible_change(old: Camera, new: Camera) -> bool:
    return (old.name, old.resolution, old.fps, old.capabilities) != (
        new.name,
        new.resolution,
        new.fps,
        new.capabilities,
    )
