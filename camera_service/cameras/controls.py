"""Camera controls service: read, write and reset V4L2 controls, remember them per physical
camera and apply them again when the camera comes back or a capture starts streaming.

Desired values of a camera = ``cameras.devices.<id>.controls`` from the config, overlaid by
the values set through the API (persisted in :class:`CameraStateStore`). They are written:

* when the camera is plugged in (``camera.connected``: at start and after every replug);
* right after every capture of the camera starts streaming (a daemon FFmpeg reader's first
  progress report), because many UVC cameras reset focus/exposure on VIDIOC_STREAMON.

The ioctls run in a daemon thread with a deadline (a wedged USB device cannot block the event
loop or the exit); calls for one camera are serialised. Every change is published as a
``camera_controls`` notification (topic ``camera.controls``).
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from camera_service.cameras.model import Camera, CameraKind, CameraStatus
from camera_service.cameras.notifications import TOPIC_CONNECTED
from camera_service.cameras.registry import CameraRegistry
from camera_service.cameras.state_store import CameraStateStore
from camera_service.cameras.v4l2_abi import CTRL_FLAG_READ_ONLY
from camera_service.cameras.v4l2_controls import (
    Control,
    ControlIOError,
    IoctlFn,
    WriteReport,
    apply_values,
    query_controls,
    read_values,
)
from camera_service.events import Event
from camera_service.media.ffmpeg import ProcessSupervisor
from camera_service.media.process import ProcessHandle

log = logging.getLogger(__name__)

TOPIC_CONTROLS = "camera.controls"
STREAMING_LINE = r"^Input #\d+, video4linux2"
T = TypeVar("T")


class ControlsError(Exception):
    """Base of the errors this service raises on purpose."""


class ControlsUnsupported(ControlsError):
    """The camera is not a V4L2 device (→ -32030 feature camera-controls)."""


class CameraUnavailable(ControlsError):
    """The camera is not connected (→ -32020)."""

    def __init__(self, message: str, state: str) -> None:
        super().__init__(message)
        self.state = state


class DeviceFailed(ControlsError):
    """The device did not answer or refused the query (→ -32050 dependency camera)."""


def _default_open(path: str) -> int:
    return os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)


def _default_ioctl(fd: int, request: int, arg: bytes) -> bytes:
    return fcntl.ioctl(fd, request, arg)


@dataclass(frozen=True)
class V4L2IO:
    """How the service reaches device nodes (tests pass a fake kernel)."""

    open_fn: Callable[[str], int] = _default_open
    ioctl: IoctlFn = _default_ioctl
    close_fn: Callable[[int], None] = os.close


async def _in_daemon_thread(fn: Callable[[], T], name: str, timeout: float) -> T:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, exc: BaseException | None) -> None:
        if future.done():
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)

    def work() -> None:
        try:
            result = fn()
        except BaseException as exc:  # delivered to the awaiting coroutine
            outcome: tuple[Any, BaseException | None] = (None, exc)
        else:
            outcome = (result, None)
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:
            log.debug("event loop closed before %s finished", name)

    threading.Thread(target=work, name=name, daemon=True).start()
    try:
        return await asyncio.wait_for(future, timeout)
    except TimeoutError:
        raise DeviceFailed(f"the camera did not answer within {timeout:g} s") from None


class ControlService:
    def __init__(
        self,
        cameras: CameraRegistry,
        store: CameraStateStore,
        publish: Callable[[Event], object],
        *,
        configured: Mapping[str, Mapping[str, int | bool]] | None = None,
        io: V4L2IO | None = None,
        timeout: float = 5.0,
        settle_timeout: float = 15.0,
    ) -> None:
        self._cameras = cameras
        self._store = store
        self._publish = publish
        self._configured = {k: dict(v) for k, v in (configured or {}).items()}
        self._io = io or V4L2IO()
        self._timeout = timeout
        self._settle_timeout = settle_timeout
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.reapplied: dict[str, int] = {}  # camera id → re-applies done (status, tests)
        cameras.add_listener(self._camera_changed)

    def attach(self, supervisor: ProcessSupervisor) -> None:
        """Re-apply after every capture start of a camera's own reader process."""
        supervisor.add_start_listener(self._process_started)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=2.0)

    # --- lookups --------------------------------------------------------------------------

    def _camera(self, camera_id: str) -> Camera:
        camera = self._cameras.get(camera_id)
        if camera is None:
            raise KeyError(camera_id)
        if camera.kind is not CameraKind.V4L2 or not camera.device_path:
            raise ControlsUnsupported(f"camera {camera_id} is not a V4L2 device")
        if camera.status is not CameraStatus.CONNECTED:
            raise CameraUnavailable(
                f"camera {camera_id} is {camera.status.value.lower()}", camera.status.value
            )
        return camera

    def persisted(self, camera: Camera) -> dict[str, int | bool]:
        entry = self._store.find(camera.stable_key, camera.serial_key)
        return dict(entry.controls) if entry is not None else {}

    def desired(self, camera: Camera) -> dict[str, int | bool]:
        """Config values overlaid by the values set through the API."""
        return {**self._configured.get(camera.id, {}), **self.persisted(camera)}

    # --- device access --------------------------------------------------------------------

    async def _on_device(self, camera: Camera, fn: Callable[[int, IoctlFn], T]) -> T:
        io, path = self._io, camera.device_path or ""

        def run() -> T:
            fd = io.open_fn(path)
            try:
                return fn(fd, io.ioctl)
            finally:
                try:
                    io.close_fn(fd)
                except OSError:
                    log.debug("closing %s failed", path, exc_info=True)

        try:
            return await _in_daemon_thread(run, f"v4l2-controls:{path}", self._timeout)
        except ControlIOError as exc:
            raise DeviceFailed(exc.reason) from exc
        except OSError as exc:
            raise DeviceFailed(f"cannot open the camera: {os.strerror(exc.errno or 0)}") from exc

    def _lock(self, camera_id: str) -> asyncio.Lock:
        return self._locks.setdefault(camera_id, asyncio.Lock())

    # --- API ------------------------------------------------------------------------------

    async def list_controls(self, camera_id: str) -> list[dict[str, Any]]:
        camera = self._camera(camera_id)
        async with self._lock(camera_id):
            controls = await self._on_device(
                camera, lambda fd, ioctl: read_values(fd, ioctl, query_controls(fd, ioctl))
            )
        return [c.public_dict() for c in controls]

    async def set_controls(
        self, camera_id: str, values: Mapping[str, object], *, persist: bool = True
    ) -> WriteReport:
        camera = self._camera(camera_id)
        async with self._lock(camera_id):
            report = await self._write(camera, values)
            if persist and report.applied:
                entry = self._store.entry(camera.stable_key or "", camera.serial_key)
                entry.controls.update(report.applied)
                await asyncio.to_thread(self._store.save)
        self._announce(camera, report, "set")
        return report

    async def reset_controls(self, camera_id: str) -> tuple[WriteReport, list[dict[str, Any]]]:
        """Every writable control back to its default; the persisted values are cleared."""
        camera = self._camera(camera_id)
        async with self._lock(camera_id):
            controls = await self._query(camera)
            # Only controls that hold a value (a button is not pressed, a write-only control
            # is left alone) and differ from their default.
            defaults = {
                c.key: c.default
                for c in controls
                if c.has_value
                and c.value is not None
                and c.value != c.default
                and not c.flags & CTRL_FLAG_READ_ONLY
            }
            report = await self._write(camera, defaults) if defaults else WriteReport()
            entry = self._store.find(camera.stable_key, camera.serial_key)
            if entry is not None and entry.controls:
                entry.controls.clear()
                await asyncio.to_thread(self._store.save)
            fresh = await self._query(camera)
        # A gated control (e.g. exposure time once auto exposure is back on) is inactive and
        # keeps its value: that is what the default state of the camera is.
        report.rejected = {k: v for k, v in report.rejected.items() if "inactive" not in v}
        self._announce(camera, report, "reset")
        return report, [c.public_dict() for c in fresh]

    async def reapply(self, camera_id: str, reason: str) -> WriteReport | None:
        """Write the desired values again (None when there are none or the camera is away)."""
        try:
            camera = self._camera(camera_id)
        except (KeyError, ControlsError):
            return None
        values = self.desired(camera)
        if not values:
            return None
        async with self._lock(camera_id):
            try:
                report = await self._write(camera, values)
            except DeviceFailed as exc:
                log.warning("re-applying controls of %s (%s) failed: %s", camera_id, reason, exc)
                return None
        self.reapplied[camera_id] = self.reapplied.get(camera_id, 0) + 1
        if report.rejected:
            log.warning(
                "controls of %s not re-applied (%s): %s", camera_id, reason, report.rejected
            )
        self._announce(camera, report, reason)
        return report

    async def _query(self, camera: Camera) -> list[Control]:
        return await self._on_device(
            camera, lambda fd, ioctl: read_values(fd, ioctl, query_controls(fd, ioctl))
        )

    async def _write(self, camera: Camera, values: Mapping[str, object]) -> WriteReport:
        return await self._on_device(
            camera, lambda fd, ioctl: apply_values(fd, ioctl, query_controls(fd, ioctl), values)
        )

    def _announce(self, camera: Camera, report: WriteReport, reason: str) -> None:
        if not report.applied and not report.rejected:
            return
        params = {
            "device": camera.id,
            "controls": dict(report.applied),
            "rejected": dict(report.rejected),
            "reason": reason,
        }
        self._publish(Event(TOPIC_CONTROLS, "camera_controls", params, device=camera.id))

    # --- hooks ----------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _camera_changed(self, camera: Camera, topic: str) -> None:
        if topic == TOPIC_CONNECTED and camera.kind is CameraKind.V4L2 and self.desired(camera):
            self._spawn(self.reapply(camera.id, "plugged"))

    def stream_started(self, camera_id: str) -> None:
        """A capture outside the daemon's own processes streams the camera now (MediaMTX's
        publisher after ``start_streaming``): write the desired values again."""
        camera = self._cameras.get(camera_id)
        if camera is not None and camera.kind is CameraKind.V4L2 and self.desired(camera):
            self._spawn(self.reapply(camera_id, "capture_started"))

    def _process_started(self, handle: ProcessHandle) -> None:
        camera = self._cameras.get(handle.camera_id or "")
        if not handle.reader or camera is None or camera.kind is not CameraKind.V4L2:
            return
        if self.desired(camera):
            self._spawn(self._after_stream_on(handle))

    async def _after_stream_on(self, handle: ProcessHandle) -> None:
        """Once the camera streams, the driver's STREAMON reset is done: FFmpeg's first
        progress report (frames flow), or its ``Input #0, video4linux2`` line (the v4l2
        demuxer prints it after VIDIOC_STREAMON; snapshots log it, and write their frame
        only after the warm-up frames)."""
        opened = asyncio.create_task(handle.wait_for_line(STREAMING_LINE))
        waits = [
            opened,
            asyncio.create_task(handle.progress_seen.wait()),
            asyncio.create_task(handle.exited.wait()),
        ]
        try:
            await asyncio.wait(waits, timeout=self._settle_timeout, return_when="FIRST_COMPLETED")
        finally:
            for task in waits:
                task.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        streaming = handle.progress_seen.is_set() or (
            opened.done() and not opened.cancelled() and opened.exception() is None
        )
        if streaming and handle.running and handle.camera_id:
            await self.reapply(handle.camera_id, "capture_started")
