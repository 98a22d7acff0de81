"""The camera registry: every known camera, its id, status and change notifications.

Ids (:mod:`.ids`). A V4L2 camera is ``camera<N>`` after the node number of its first
capture node; a replug gets its id back. Configured sources and external streams
(:mod:`.sources`) bring their own ids, checked here.

One camera per physical device: a second capture-capable node with the same ``stable_key`` as an
active camera is not listed (metadata nodes never reach the registry as cameras at all).

Lifecycle: CONNECTED/ERROR → (node removed) DISCONNECTED, still listed → forgotten
``forget_after`` seconds later. :meth:`CameraRegistry.expire` does the forgetting for a given
``now`` (tests call it with an injected clock); when an event loop runs, a ``call_later`` timer
calls it automatically.

Notifications (:mod:`.notifications`): listeners ``(camera, topic)`` get immutable snapshots
on ``camera.connected``, ``camera.disconnected`` and ``camera.status_change``; forget
listeners ``(camera)`` hear ``camera.forgotten``.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from camera_service.cameras.ids import IdMemory, natural_key
from camera_service.cameras.model import (
    Camera,
    CameraKind,
    CameraStatus,
    Capabilities,
    is_valid_camera_id,
)
from camera_service.cameras.notifications import (
    TOPIC_DISCONNECTED,
    TOPIC_STATUS_CHANGE,
    CameraListeners,
    ChangeListener,
    ForgetListener,
    topic_for,
)
from camera_service.cameras.sources import configured_camera, external_camera
from camera_service.cameras.v4l2 import choose_default_mode

log = logging.getLogger(__name__)

# (camera id, capabilities, stable_key, serial_key) → (pixel format, resolution, fps)
ModeChooser = Callable[[str, Capabilities, str, str | None], tuple[str | None, str, int]]


class CameraIdError(ValueError):
    """A configured/external id is malformed or already used."""


class CameraRegistry:
    """All cameras (V4L2, configured, external). Not thread-safe: use from the event loop."""

    def __init__(
        self,
        *,
        forget_after: float = 300.0,
        on_change: ChangeListener | None = None,
        on_forgotten: ForgetListener | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        default_resolution: str = "1280x720",
        default_fps: int = 30,
        schedule_expiry: bool = True,
        max_remembered: int = 256,
    ) -> None:
        self.forget_after = forget_after
        self._clock = clock
        self._wall = wall_clock
        self._default_resolution = default_resolution
        self._default_fps = default_fps
        self._schedule_expiry = schedule_expiry
        self._cameras: dict[str, Camera] = {}
        self._gone_since: dict[str, float] = {}
        self._ids = IdMemory(max_remembered)
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._listeners = CameraListeners(on_change, on_forgotten)
        self.mode_chooser: ModeChooser | None = None  # capture settings (cameras/capture_settings)

    # --- listeners ---------------------------------------------------------------------------

    def add_listener(self, listener: ChangeListener) -> None:
        self._listeners.add(listener)

    def add_forget_listener(self, listener: ForgetListener) -> None:
        self._listeners.add_forget(listener)

    # --- lookups -----------------------------------------------------------------------------

    def get(self, camera_id: str) -> Camera | None:
        return self._cameras.get(camera_id)

    def list(self) -> builtins.list[Camera]:
        return [self._cameras[i] for i in sorted(self._cameras, key=natural_key)]

    def ids(self) -> set[str]:
        return set(self._cameras)

    def counts(self) -> dict[str, int]:
        cams = self._cameras.values()
        return {
            "total": len(self._cameras),
            "connected": sum(c.status is CameraStatus.CONNECTED for c in cams),
            "disconnected": sum(c.status is CameraStatus.DISCONNECTED for c in cams),
            "error": sum(c.status is CameraStatus.ERROR for c in cams),
        }

    def by_device_path(self, device_path: str) -> Camera | None:
        """The active (not DISCONNECTED) V4L2 camera on that node."""
        for cam in self._cameras.values():
            if (
                cam.kind is CameraKind.V4L2
                and cam.device_path == device_path
                and cam.status is not CameraStatus.DISCONNECTED
            ):
                return cam
        return None

    def active_device_paths(self) -> set[str]:
        return {
            c.device_path
            for c in self._cameras.values()
            if c.kind is CameraKind.V4L2
            and c.device_path
            and c.status is not CameraStatus.DISCONNECTED
        }

    def _by_identity(self, stable_key: str, serial_key: str | None) -> Camera | None:
        v4l2 = [c for c in self._cameras.values() if c.kind is CameraKind.V4L2]
        for cam in v4l2:
            if cam.stable_key == stable_key:
                return cam
        if serial_key:  # same device moved to another port
            for cam in v4l2:
                if cam.serial_key == serial_key and cam.status is CameraStatus.DISCONNECTED:
                    return cam
        return None

    def _target(
        self, device_path: str, stable_key: str, serial_key: str | None
    ) -> tuple[bool, Camera | None]:
        """(skip, existing camera to update). skip: a secondary node of an active device."""
        current = self.by_device_path(device_path)
        if current is not None:
            return False, current
        owner = self._by_identity(stable_key, serial_key)
        if owner is not None and owner.status is not CameraStatus.DISCONNECTED:
            return True, None
        return False, owner

    def _allocate_id(self, device_path: str, stable_key: str, serial_key: str | None) -> str:
        return self._ids.allocate(device_path, stable_key, serial_key, listed=self._cameras)

    # --- V4L2 devices ------------------------------------------------------------------------

    def device_added(
        self,
        device_path: str,
        capabilities: Capabilities,
        *,
        stable_key: str | None = None,
        serial_key: str | None = None,
    ) -> Camera | None:
        """A node was probed successfully. Returns the camera, or None (not a camera node)."""
        if not capabilities.is_capture:
            return None
        key = stable_key or f"dev:{device_path}"
        skip, current = self._target(device_path, key, serial_key)
        if skip:
            log.debug("%s: secondary capture node of an already listed device", device_path)
            return None
        now = self._wall()
        cam_id = (
            current.id if current is not None else self._allocate_id(device_path, key, serial_key)
        )
        pixel_format, resolution, fps = self._choose_mode(cam_id, capabilities, key, serial_key)
        if current is None:
            cam = Camera(
                id=cam_id,
                kind=CameraKind.V4L2,
                status=CameraStatus.CONNECTED,
                name=capabilities.card or cam_id,
                resolution=resolution,
                fps=fps,
                capabilities=capabilities,
                device_path=device_path,
                stable_key=key,
                serial_key=serial_key,
                connected_at=now,
                pixel_format=pixel_format,
            )
            return self._store(cam, None, key, serial_key)
        was_connected = current.status is CameraStatus.CONNECTED
        cam = replace(
            current,
            status=CameraStatus.CONNECTED,
            error=None,
            device_path=device_path,
            capabilities=capabilities,
            name=capabilities.card or current.name,
            resolution=resolution,
            fps=fps,
            pixel_format=pixel_format,
            stable_key=key,
            serial_key=serial_key or current.serial_key,
            connected_at=current.connected_at if was_connected else now,
            disconnected_at=None,
        )
        return self._store(cam, current, key, serial_key)

    def _choose_mode(
        self, cam_id: str, caps: Capabilities, stable_key: str, serial_key: str | None
    ) -> tuple[str | None, str, int]:
        if self.mode_chooser is not None:
            return self.mode_chooser(cam_id, caps, stable_key, serial_key)
        resolution, fps = choose_default_mode(caps, self._default_resolution, self._default_fps)
        return None, resolution, fps

    def set_capture_mode(
        self, camera_id: str, pixel_format: str | None, resolution: str, fps: int
    ) -> Camera | None:
        """Change a camera's capture mode (``set_camera_settings``); listeners get
        ``camera.status_change`` when anything changed."""
        current = self._cameras.get(camera_id)
        if current is None:
            return None
        cam = replace(current, pixel_format=pixel_format, resolution=resolution, fps=fps)
        if cam == current:
            return current
        self._cameras[camera_id] = cam
        self._listeners.notify(cam, TOPIC_STATUS_CHANGE)
        return cam

    def device_error(
        self,
        device_path: str,
        reason: str,
        *,
        stable_key: str | None = None,
        serial_key: str | None = None,
        name: str | None = None,
    ) -> Camera | None:
        """A node could not be probed: list (or mark) its device as ERROR with ``reason``."""
        key = stable_key or f"dev:{device_path}"
        skip, current = self._target(device_path, key, serial_key)
        if skip:
            log.debug("%s: probe failed on a secondary node (%s)", device_path, reason)
            return None
        if current is None:
            cam_id = self._allocate_id(device_path, key, serial_key)
            cam = Camera(
                id=cam_id,
                kind=CameraKind.V4L2,
                status=CameraStatus.ERROR,
                name=name or cam_id,
                resolution=self._default_resolution,
                fps=self._default_fps,
                device_path=device_path,
                error=reason,
                stable_key=key,
                serial_key=serial_key,
            )
            return self._store(cam, None, key, serial_key)
        cam = replace(
            current,
            status=CameraStatus.ERROR,
            error=reason,
            device_path=device_path,
            stable_key=key,
            serial_key=serial_key or current.serial_key,
            disconnected_at=None,
        )
        return self._store(cam, current, key, serial_key)

    def device_removed(self, device_path: str) -> Camera | None:
        """The node went away: its camera becomes DISCONNECTED (kept listed)."""
        current = self.by_device_path(device_path)
        if current is None:
            return None
        cam = replace(
            current, status=CameraStatus.DISCONNECTED, error=None, disconnected_at=self._wall()
        )
        self._gone_since[cam.id] = self._clock()
        self._cameras[cam.id] = cam
        self._arm_timer(cam.id)
        self._listeners.notify(cam, TOPIC_DISCONNECTED)
        return cam

    def _store(
        self, cam: Camera, previous: Camera | None, key: str, serial_key: str | None
    ) -> Camera:
        self._cameras[cam.id] = cam
        self._gone_since.pop(cam.id, None)
        self._cancel_timer(cam.id)
        self._ids.remember(cam.id, key, serial_key)
        topic = topic_for(previous, cam)
        if topic is not None:
            self._listeners.notify(cam, topic)
        return cam

    # --- forgetting --------------------------------------------------------------------------

    def expire(self, now: float | None = None) -> builtins.list[Camera]:
        """Forget cameras DISCONNECTED for ``forget_after`` seconds or more (clock time)."""
        current = self._clock() if now is None else now
        due = [
            cid for cid, since in self._gone_since.items() if current - since >= self.forget_after
        ]
        forgotten: builtins.list[Camera] = []
        for cam_id in due:
            del self._gone_since[cam_id]
            self._cancel_timer(cam_id)
            cam = self._cameras.pop(cam_id, None)
            if cam is not None:
                log.info("camera %s forgotten after %.0f s disconnected", cam_id, self.forget_after)
                forgotten.append(cam)
                self._listeners.notify_forgotten(cam)
        return forgotten

    def _arm_timer(self, cam_id: str) -> None:
        if not self._schedule_expiry:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._cancel_timer(cam_id)
        self._timers[cam_id] = loop.call_later(self.forget_after + 0.01, self._timer_fired)

    def _timer_fired(self) -> None:
        self.expire()

    def _cancel_timer(self, cam_id: str) -> None:
        handle = self._timers.pop(cam_id, None)
        if handle is not None:
            handle.cancel()

    def close(self) -> None:
        """Cancel pending expiry timers."""
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()

    # --- configured and external sources -----------------------------------------------------

    def _check_new_id(self, camera_id: object) -> str:
        if not isinstance(camera_id, str) or not is_valid_camera_id(camera_id):
            raise CameraIdError(f"invalid camera id {camera_id!r}")
        if camera_id in self._cameras:
            raise CameraIdError(f"camera id {camera_id!r} is already used")
        return camera_id

    def load_configured(self, sources: Iterable[Mapping[str, Any]]) -> builtins.list[Camera]:
        """Add configured sources ``{id, name, input, input_format, exclusive}`` (CONNECTED).

        Optional ``resolution`` / ``fps`` keys; otherwise lavfi ``size=``/``rate=`` are used.
        Raises :class:`CameraIdError` / ``ValueError`` before adding anything.
        """
        items = list(sources)
        seen: set[str] = set()
        for src in items:
            cam_id = self._check_new_id(src.get("id"))
            if cam_id in seen:
                raise CameraIdError(f"camera id {cam_id!r} is configured twice")
            seen.add(cam_id)
            if not isinstance(src.get("input"), str) or not src["input"]:
                raise ValueError(f"camera source {cam_id!r} needs a non-empty 'input'")
        return [self._add_configured(src) for src in items]

    def _add_configured(self, src: Mapping[str, Any]) -> Camera:
        cam = configured_camera(src, self._default_resolution, self._default_fps, self._wall())
        return self._store(cam, None, f"configured:{cam.id}", None)

    def add_external(self, stream_name: str, stream_url: str, stream_type: str) -> Camera:
        """An external stream becomes a CONNECTED camera with id = stream_name."""
        cam_id = self._check_new_id(stream_name)
        cam = external_camera(
            cam_id, stream_url, self._default_resolution, self._default_fps, self._wall()
        )
        return self._store(cam, None, f"external:{cam_id}", None)

    def remove_external(self, stream_name: str) -> Camera | None:
        """Drop an external camera at once: notified as disconnected, then forgotten."""
        cam = self._cameras.get(stream_name)
        if cam is None or cam.kind is not CameraKind.EXTERNAL:
            return None
        gone = replace(cam, status=CameraStatus.DISCONNECTED, disconnected_at=self._wall())
        del self._cameras[stream_name]
        self._listeners.notify(gone, TOPIC_DISCONNECTED)
        self._listeners.notify_forgotten(gone)
        return gone
