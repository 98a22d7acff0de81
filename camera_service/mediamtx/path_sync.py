"""MediaMTX paths kept in line with the cameras: desired state, reconcile, per-camera sync.

Every camera has a MediaMTX path named by its id (``paths.path_name_for``), configured as
:func:`.desired.desired_conf` says. Camera listeners re-provision a camera's path when it
connects or changes and delete it when the camera is forgotten; a reconcile runs whenever
MediaMTX comes up (start-up and after every outage) and whenever a periodic
``/v3/paths/list`` shows a wanted path missing (a restart between two probes). Ownership:
``<state_dir>/mediamtx_paths.json``.

What the daemon wants of a path beyond its camera (explicit streaming, recording in
MediaMTX) is kept in :attr:`PathSync.intents`; the streaming methods (:mod:`.streaming`)
and MediaMTX recordings (:mod:`.recording`) change it and :meth:`PathSync.apply` the
result. A recording that reads the device directly (started while MediaMTX was down) makes
the path idle (no publisher) until it ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import TYPE_CHECKING, Any

from camera_service.cameras.model import Camera
from camera_service.cameras.registry import CameraRegistry
from camera_service.config import MediaMTXConfig
from camera_service.events import Event
from camera_service.mediamtx.calls import MediaMTXCalls
from camera_service.mediamtx.client import MediaMTXClient, MediaMTXError
from camera_service.mediamtx.desired import PathIntents, PathSettings, desired_conf
from camera_service.mediamtx.errors import (
    MediaMTXUnavailableError,
    PathConflictError,
    StreamStateError,
)
from camera_service.mediamtx.models import PathConf
from camera_service.mediamtx.paths import (
    PathConflict,
    PathOwnership,
    PathProvisioner,
    ProvisionAction,
    ReconcileReport,
    path_name_for,
)

if TYPE_CHECKING:
    from camera_service.media.recordings import RecordingManager

log = logging.getLogger(__name__)


class PathSync(MediaMTXCalls):
    """Our MediaMTX paths: what each camera needs now and keeping MediaMTX there."""

    def __init__(
        self,
        config: MediaMTXConfig,
        cameras: CameraRegistry,
        client: MediaMTXClient,
        *,
        settings: PathSettings,
        ownership: PathOwnership,
    ) -> None:
        super().__init__(config, cameras, client)
        self.settings = settings
        self.ownership = ownership
        self.provisioner = PathProvisioner(self.client, ownership=self.ownership)
        self._recordings: RecordingManager | None = None
        self._device_readers: list[Callable[[str], bool]] = []
        self.intents = PathIntents()
        self._conflicts: dict[str, str] = {}
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.last_reconcile: ReconcileReport | None = None
        self.last_reconcile_at: float | None = None
        self.reconciles = 0
        self._reconciled_started: str | None = None
        self.reconciled = asyncio.Event()

    def attach_device_reader(self, reads_device: Callable[[str], bool]) -> None:
        """Another single reader of cameras (continuous recording): while it holds a device,
        the camera's path does not publish from it."""
        self._device_readers.append(reads_device)

    def attach_recordings(self, recordings: RecordingManager) -> None:
        """The recording manager whose device readers the paths must respect."""
        self._recordings = recordings

    async def wait_idle(self) -> None:
        """Wait until no provisioning work (path syncs, reconcile) is pending."""
        while pending := [t for t in self._tasks if not t.done()]:
            await asyncio.wait(pending)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _reconcile_summary(self) -> dict[str, Any] | None:
        report = self.last_reconcile
        if report is None:
            return None
        return {
            "at": self.last_reconcile_at,
            "count": self.reconciles,
            "added": report.added,
            "replaced": report.replaced,
            "reloaded": report.reloaded,
            "removed": report.removed,
            "failed": report.failed,
        }

    # --- desired state ----------------------------------------------------------------------

    def reads_device(self, camera_id: str) -> bool:
        """A recording process of this daemon reads the camera's device itself."""
        if any(reads(camera_id) for reads in self._device_readers):
            return True
        if self._recordings is None:
            return False
        handle = self._recordings.process(camera_id)
        return handle is not None and handle.reader and handle.running

    def reads_stream(self, camera_id: str) -> bool:
        """A recording depends on the camera's MediaMTX stream."""
        if camera_id in self.intents.recording:
            return True
        if self._recordings is None:
            return False
        handle = self._recordings.process(camera_id)
        return handle is not None and not handle.reader and handle.running

    def desired_conf(self, camera: Camera) -> PathConf | None:
        """The path configuration a camera needs now; None when it cannot have a path."""
        return desired_conf(
            camera, self.intents, self.settings, device_read=self.reads_device(camera.id)
        )

    def _desired_all(self) -> dict[str, PathConf]:
        desired: dict[str, PathConf] = {}
        for camera in self.cameras.list():
            conf = self.desired_conf(camera)
            if conf is not None:
                desired[path_name_for(camera.id)] = conf
        return desired

    # --- provisioning -----------------------------------------------------------------------

    async def reconcile(self) -> ReconcileReport | None:
        """Bring MediaMTX in line with every camera; None when MediaMTX failed meanwhile."""
        async with self._lock:
            desired = self._desired_all()
            started = self.monitor.started
            try:
                report = await self.provisioner.reconcile(desired)
            except MediaMTXError as exc:
                log.warning("MediaMTX reconcile failed: %s", exc)
                self.monitor.trigger()
                return None
        self._conflicts = dict(report.failed)
        self._reconciled_started = started
        self.last_reconcile, self.last_reconcile_at = report, time.time()
        self.reconciles += 1
        self.reconciled.set()
        level = logging.INFO if report.changed or report.failed else logging.DEBUG
        log.log(level, "MediaMTX paths reconciled", extra=self._reconcile_summary())
        return report

    async def sync_camera(self, camera_id: str) -> None:
        """Provision (or remove) one camera's path now; quiet no-op while MediaMTX is down."""
        if not self.enabled or not self.monitor.is_up:
            return
        async with self._lock:
            try:
                await self._sync_locked(camera_id)
            except PathConflict as exc:
                self._conflicts[exc.name] = str(exc)
                log.warning("%s", exc)
            except MediaMTXError as exc:
                log.warning("MediaMTX path of %s not updated: %s", camera_id, exc)
                self.monitor.trigger()

    async def _sync_locked(self, camera_id: str) -> None:
        camera = self.cameras.get(camera_id)
        conf = self.desired_conf(camera) if camera is not None else None
        name = camera_id  # camera ids are valid path names (model.is_valid_camera_id)
        if conf is None:
            if self.ownership.owns(name):
                await self.provisioner.remove(name)
                self._paths.pop(name, None)
            return
        await self.provisioner.ensure(name, conf)
        self._conflicts.pop(name, None)

    def _camera_changed(self, camera: Camera, topic: str) -> None:
        if self.enabled:
            self._spawn(self.sync_camera(camera.id))

    def _bus_event(self, event: Event) -> None:
        """A recording started or ended: the path may need its publisher back (or gone)."""
        if self.enabled and event.topic.startswith("recording.") and event.device:
            self._spawn(self.sync_camera(event.device))

    async def _maintain(self) -> None:
        """Refresh the path cache; reconcile when MediaMTX restarted between two probes
        (``/v3/info`` ``started`` changed) or a wanted path went missing."""
        while True:
            await asyncio.sleep(self.config.health_interval)
            if not self.monitor.is_up:
                continue
            if self.monitor.started != self._reconciled_started:
                log.warning("MediaMTX restarted (started %s); reconciling", self.monitor.started)
                await self.reconcile()
            try:
                await self.refresh_paths()
            except MediaMTXUnavailableError:
                continue
            wanted = set(self._desired_all()) - set(self._conflicts)
            if wanted - set(self._paths):
                log.warning(
                    "MediaMTX lost paths %s; reconciling", sorted(wanted - set(self._paths))
                )
                await self.reconcile()

    # --- path state for the methods ----------------------------------------------------------

    def streaming_since(self, camera_id: str) -> datetime | None:
        return self.intents.streaming.get(camera_id)

    def stream_in_use(self, camera_id: str) -> bool:
        """Explicitly streamed, or a recording reads the stream."""
        return camera_id in self.intents.streaming or self.reads_stream(camera_id)

    def conflict(self, camera_id: str) -> str | None:
        return self._conflicts.get(camera_id)

    async def apply(self, camera: Camera) -> str | None:
        """Make the camera's path match :meth:`desired_conf` now (raises on failure).

        Returns the ``readyTime`` of the path as it was before a write that restarts it
        (MediaMTX applies writes after its 200, so the old path may still answer ready for
        a moment; :func:`.streaming.wait_ready` ignores that one), else None.
        """
        conf = self.desired_conf(camera)
        if conf is None:
            raise StreamStateError(f"Camera {camera.id} has no stream.", "ERROR", ["CONNECTED"])
        name = path_name_for(camera.id)
        before = await self.path_state(camera)
        async with self._lock:
            try:
                action = await self._call(lambda: self.provisioner.ensure(name, conf))
            except PathConflict as exc:
                self._conflicts[name] = str(exc)
                raise PathConflictError(str(exc)) from None
        self._conflicts.pop(name, None)
        if action in (ProvisionAction.REPLACED, ProvisionAction.ADDED) and before is not None:
            return before.ready_time if before.is_ready else None
        return None

    def spawn_sync(self, camera_id: str) -> None:
        """Re-provision the camera's path in the background (after a failed change)."""
        self._spawn(self.sync_camera(camera_id))

    def path_usable(self, camera_id: str) -> bool:
        """MediaMTX is up and holds our path for the camera (no conflict)."""
        name = camera_id
        return (
            self.enabled
            and self.monitor.is_up
            and self.ownership.owns(name)
            and name not in self._conflicts
        )
