"""Per camera capture settings (pixel format, resolution, fps): from the config
(``cameras.devices.<id>``) or ``set_camera_settings`` (persisted per physical camera, wins),
validated against the probed capabilities and turned into the capture mode the camera is
opened with (see :mod:`camera_service.media.capture` for the choice itself)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from camera_service.cameras.controls import CameraUnavailable, ControlsUnsupported
from camera_service.cameras.model import Camera, CameraKind, Capabilities
from camera_service.cameras.registry import CameraRegistry
from camera_service.cameras.state_store import CameraStateStore
from camera_service.media.capture import (
    PIXEL_FORMAT_AUTO,
    CaptureMode,
    CaptureRequest,
    CaptureSettingsError,
    choose_mode,
)

log = logging.getLogger(__name__)


def _request(data: Mapping[str, Any]) -> CaptureRequest:
    fmt = data.get("pixel_format")
    res = data.get("resolution")
    fps = data.get("fps")
    return CaptureRequest(
        pixel_format=fmt if isinstance(fmt, str) and fmt else PIXEL_FORMAT_AUTO,
        resolution=res if isinstance(res, str) and res else None,
        fps=fps if isinstance(fps, int) and not isinstance(fps, bool) and fps > 0 else None,
    )


class CaptureSettingsService:
    def __init__(
        self,
        cameras: CameraRegistry,
        store: CameraStateStore,
        *,
        configured: Mapping[str, CaptureRequest] | None = None,
        default_resolution: str = "640x480",
        default_fps: int = 15,
        busy: Callable[[str], str | None] = lambda _camera_id: None,
        encoder: Callable[[], str] = lambda: "libx264",
    ) -> None:
        """``busy(camera_id)``: the state that forbids a change now (e.g. ``RECORDING``)."""
        self._cameras = cameras
        self._store = store
        self._configured = dict(configured or {})
        self._default_resolution = default_resolution
        self._default_fps = default_fps
        self._busy = busy
        self._encoder = encoder
        self._modes: dict[str, CaptureMode] = {}
        cameras.mode_chooser = self.choose

    def request_for(
        self, camera_id: str, stable_key: str | None, serial_key: str | None
    ) -> CaptureRequest:
        entry = self._store.find(stable_key, serial_key)
        if entry is not None and entry.settings:
            return _request(entry.settings)
        return self._configured.get(camera_id, CaptureRequest())

    def choose(
        self, camera_id: str, caps: Capabilities, stable_key: str, serial_key: str | None
    ) -> tuple[str | None, str, int]:
        """The registry's mode chooser: called when a V4L2 camera is (re)probed."""
        request = self.request_for(camera_id, stable_key, serial_key)
        try:
            mode = choose_mode(caps, request, self._default_resolution, self._default_fps)
        except CaptureSettingsError as exc:
            log.warning(
                "camera %s: stored capture settings do not fit the camera (%s); using auto",
                camera_id,
                exc,
            )
            mode = choose_mode(caps, CaptureRequest(), self._default_resolution, self._default_fps)
            mode = CaptureMode(
                mode.pixel_format, mode.resolution, mode.fps, f"{mode.reason} ({exc})"
            )
        self._modes[camera_id] = mode
        log.info(
            "camera %s capture mode %s %s@%d: %s",
            camera_id,
            mode.pixel_format or "-",
            mode.resolution,
            mode.fps,
            mode.reason,
        )
        return mode.pixel_format, mode.resolution, mode.fps

    def _v4l2(self, camera_id: str) -> Camera:
        camera = self._cameras.get(camera_id)
        if camera is None:
            raise KeyError(camera_id)
        if camera.kind is not CameraKind.V4L2:
            raise ControlsUnsupported(f"camera {camera_id} is not a V4L2 device")
        return camera

    def settings(self, camera_id: str) -> dict[str, Any]:
        camera = self._v4l2(camera_id)
        request = self.request_for(camera.id, camera.stable_key, camera.serial_key)
        mode = self._modes.get(camera.id)
        return {
            "device": camera.id,
            "pixel_format": request.pixel_format,
            "resolution": camera.resolution,
            "fps": camera.fps,
            "encoder": "copy" if camera.pixel_format == "H264" else self._encoder(),
            "active_pixel_format": camera.pixel_format,
            "requested": request.public_dict(),
            "selection": mode.reason if mode is not None else None,
            "modes": {f: dict(sizes) for f, sizes in camera.capabilities.modes.items()},
        }

    async def update(
        self,
        camera_id: str,
        pixel_format: str | None = None,
        resolution: str | None = None,
        fps: int | None = None,
    ) -> dict[str, Any]:
        """Validate, store (per physical camera) and apply; members left out keep their value."""
        camera = self._v4l2(camera_id)
        state = self._busy(camera.id)
        if state is not None:
            raise CameraUnavailable(
                f"camera {camera.id} is busy ({state.lower()}); stop it to change the settings",
                state,
            )
        current = self.request_for(camera.id, camera.stable_key, camera.serial_key)
        request = CaptureRequest(
            pixel_format=pixel_format if pixel_format is not None else current.pixel_format,
            resolution=resolution if resolution is not None else current.resolution,
            fps=fps if fps is not None else current.fps,
        )
        mode = choose_mode(
            camera.capabilities, request, self._default_resolution, self._default_fps
        )
        entry = self._store.entry(camera.stable_key or f"id:{camera.id}", camera.serial_key)
        entry.settings = {k: v for k, v in request.public_dict().items() if v is not None}
        await asyncio.to_thread(self._store.save)
        self._modes[camera.id] = mode
        self._cameras.set_capture_mode(camera.id, mode.pixel_format, mode.resolution, mode.fps)
        return self.settings(camera.id)
