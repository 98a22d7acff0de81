"""MediaMTX path names, ownership and :class:`PathProvisioner` (the API writes).

Names and ownership
-------------------
A camera's MediaMTX path is named by its camera id (``rtsp://<host>:8554/camera0``), so the
name cannot mark the path as ours. Ownership is recorded instead: :class:`PathOwnership`
keeps the names of the paths camera-service created, persisted as JSON in the state
directory (``mediamtx_paths.json``, written atomically). MediaMTX keeps no free-form metadata
on a path, and API-made paths vanish when it restarts, so the record lives with us.

* A name is claimed *before* the path is added, so the record is a superset of what exists:
  a crash between the two leaves a claim without a path, which the next reconcile drops.
* :meth:`PathProvisioner.ensure` never replaces a path it does not own (an operator's entry
  in ``mediamtx.yml`` or one added by hand through the API): it raises :class:`PathConflict`.
* :meth:`PathProvisioner.reconcile` executes :func:`~.desired.plan_reconcile`: it deletes
  only owned paths that are no longer wanted. Regular-expression paths,
  ``all``/``all_others`` and every unowned path are left alone.

What a path contains is built in :mod:`.pathconf` (and :mod:`.publisher`).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from camera_service.fsutil import atomic_write, load_recoverable
from camera_service.mediamtx.client import (
    MediaMTXClient,
    MediaMTXNotFound,
    MediaMTXRequestError,
)
from camera_service.mediamtx.desired import conflict_reason, plan_reconcile
from camera_service.mediamtx.models import PathConf, RecordFormat
from camera_service.mediamtx.pathconf import conf_matches, recording_patch

log = logging.getLogger(__name__)

OWNERSHIP_FILE = "mediamtx_paths.json"
_OWNERSHIP_VERSION = 1

#: Names MediaMTX gives a special meaning (catch-all entries), never used for a camera.
RESERVED_NAMES = frozenset({"all", "all_others"})

#: Characters allowed in the names we create: a subset of what every MediaMTX release
#: accepts (older ones refuse ``.`` and ``~``), without ``/`` so names stay flat.
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")


# -- names -------------------------------------------------------------------------------


def path_name_for(camera_id: str) -> str:
    """The MediaMTX path name of a camera: the camera id itself.

    Raises ValueError when the id has characters MediaMTX path names cannot carry, or is a
    name MediaMTX reserves (``all``, ``all_others``).
    """
    if not _NAME_RE.match(camera_id):
        raise ValueError(
            f"camera id {camera_id!r} cannot be a MediaMTX path name "
            "(use letters, digits, '_' and '-')"
        )
    if camera_id in RESERVED_NAMES:
        raise ValueError(f"camera id {camera_id!r} is a reserved MediaMTX path name")
    return camera_id


# -- provisioner -------------------------------------------------------------------------


class ProvisionAction(enum.StrEnum):
    ADDED = "added"
    REPLACED = "replaced"
    UNCHANGED = "unchanged"


@dataclass
class ReconcileReport:
    """What :meth:`PathProvisioner.reconcile` did (names sorted per list)."""

    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    #: Paths MediaMTX refused (400) or that we do not own: name -> reason.
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.replaced or self.removed)

    def record(self, name: str, action: ProvisionAction) -> None:
        {
            ProvisionAction.ADDED: self.added,
            ProvisionAction.REPLACED: self.replaced,
            ProvisionAction.UNCHANGED: self.unchanged,
        }[action].append(name)


class PathConflict(Exception):
    """A path of that name exists in MediaMTX and camera-service did not create it."""

    def __init__(self, name: str) -> None:
        super().__init__(conflict_reason(name))
        self.name = name


def _parse_ownership(data: object) -> set[str]:
    paths = data.get("paths") if isinstance(data, dict) else None
    if not isinstance(paths, list):
        raise ValueError("no 'paths' list")
    return {name for name in paths if isinstance(name, str) and _NAME_RE.match(name)}


class PathOwnership:
    """The names of the MediaMTX paths camera-service created.

    In memory only without ``file``; with it, loaded at construction and rewritten
    atomically (JSON ``{"version": 1, "paths": [...]}``, mode 0600) on every change. An
    unusable file is moved aside (``.corrupt-<time>``) and the record starts empty: paths of a
    lost record are then treated as foreign, never deleted.
    """

    def __init__(self, file: Path | None = None) -> None:
        self.file = file
        self._names: set[str] = self._load(file) if file is not None else set()
        self._lock = asyncio.Lock()

    @staticmethod
    def _load(file: Path) -> set[str]:
        return load_recoverable(file, _parse_ownership, set)

    def owns(self, name: str) -> bool:
        return name in self._names

    def names(self) -> frozenset[str]:
        return frozenset(self._names)

    async def claim(self, name: str) -> None:
        await self._update(self._names | {name})

    async def release(self, *names: str) -> None:
        await self._update(self._names - set(names))

    async def _update(self, names: set[str]) -> None:
        if names == self._names:
            return
        self._names = names
        if self.file is None:
            return
        async with self._lock:  # one writer at a time, always the latest state
            text = json.dumps({"version": _OWNERSHIP_VERSION, "paths": sorted(self._names)})
            await asyncio.to_thread(atomic_write, self.file, text + "\n")


def _check_name(name: str) -> None:
    if not _NAME_RE.match(name) or name in RESERVED_NAMES:
        raise ValueError(f"{name!r} is not a path name camera-service manages")


class PathProvisioner:
    """Keeps MediaMTX path configuration in line with the cameras camera-service serves.

    All methods raise :class:`~camera_service.mediamtx.client.MediaMTXUnavailable` when
    MediaMTX cannot be reached. Only paths recorded in ``ownership`` are ever replaced or
    deleted (see the module docstring); without one, an in-memory record is used.
    """

    def __init__(self, client: MediaMTXClient, *, ownership: PathOwnership | None = None) -> None:
        self._client = client
        self.ownership = ownership if ownership is not None else PathOwnership()

    def name_for(self, camera_id: str) -> str:
        return path_name_for(camera_id)

    def owns(self, name: str) -> bool:
        return self.ownership.owns(name)

    async def ensure(self, name: str, conf: PathConf) -> ProvisionAction:
        """Make path ``name`` match ``conf``: add it, replace it, or leave it (idempotent).

        Raises :class:`PathConflict` when the path exists and is not ours.
        """
        _check_name(name)
        try:
            actual: PathConf | None = await self._client.get_config_path(name)
        except MediaMTXNotFound:
            actual = None
        if actual is not None and not self.owns(name):
            raise PathConflict(name)
        return await self._apply(name, conf, actual)

    async def _apply(self, name: str, conf: PathConf, actual: PathConf | None) -> ProvisionAction:
        if actual is None:
            owned_before = self.owns(name)
            await self.ownership.claim(name)  # before the add: the record stays a superset
            try:
                await self._client.add_config_path(name, conf)
                return ProvisionAction.ADDED
            except MediaMTXRequestError:
                # Added concurrently ("path already exists")? Ours: replace; else: conflict.
                with contextlib.suppress(MediaMTXNotFound):
                    actual = await self._client.get_config_path(name)
                if actual is None or not owned_before:
                    await self.ownership.release(name)
                if actual is None:
                    raise
                if not owned_before:
                    raise PathConflict(name) from None
        if conf_matches(conf, actual):
            return ProvisionAction.UNCHANGED
        try:
            await self._client.replace_config_path(name, conf)
        except MediaMTXNotFound:  # deleted concurrently
            await self._client.add_config_path(name, conf)
            return ProvisionAction.ADDED
        return ProvisionAction.REPLACED

    async def remove(self, name: str) -> bool:
        """Delete our path ``name``; False when it did not exist.

        Raises ValueError for an existing path camera-service does not own.
        """
        if not self.owns(name):
            try:
                await self._client.get_config_path(name)
            except MediaMTXNotFound:
                return False
            raise ValueError(f"path {name!r} was not created by camera-service")
        try:
            await self._client.delete_config_path(name)
        except MediaMTXNotFound:
            await self.ownership.release(name)
            return False
        await self.ownership.release(name)
        return True

    async def reconcile(self, desired: Mapping[str, PathConf]) -> ReconcileReport:
        """Make MediaMTX hold exactly the ``desired`` paths among those we own.

        Owned paths not in ``desired`` are deleted, missing ones added, different ones
        replaced. A desired name held by a path we do not own, or a path MediaMTX refuses
        (400), is reported in ``failed`` and does not stop the others. Claims on paths that
        no longer exist are dropped.

        Note that a replace resets every field not in the desired conf, including the
        recording fields set by :meth:`set_recording`.
        """
        for name in desired:
            _check_name(name)
        current = {
            conf.name: conf for conf in await self._client.list_all_config_paths() if conf.name
        }
        plan = plan_reconcile(desired, current, self.ownership.names())
        report = ReconcileReport(unchanged=list(plan.unchanged), failed=dict(plan.conflicts))
        await self.ownership.release(*plan.release)
        for name in plan.remove:
            await self._remove_stale(name, report)
        for name in sorted({*plan.add, *plan.replace}):
            conf = plan.add.get(name) or plan.replace[name]
            await self._reconcile_one(name, conf, current.get(name), report)
        return report

    async def _reconcile_one(
        self, name: str, conf: PathConf, actual: PathConf | None, report: ReconcileReport
    ) -> None:
        try:
            action = await self._apply(name, conf, actual)
        except MediaMTXRequestError as exc:
            report.failed[name] = exc.message
        except PathConflict as exc:
            report.failed[name] = str(exc)
        else:
            report.record(name, action)

    async def _remove_stale(self, name: str, report: ReconcileReport) -> None:
        try:
            await self._client.delete_config_path(name)
        except MediaMTXNotFound:
            pass
        except MediaMTXRequestError as exc:
            report.failed[name] = exc.message
            return
        else:
            report.removed.append(name)
        await self.ownership.release(name)

    async def set_recording(
        self,
        name: str,
        enabled: bool,
        record_path: str | None = None,
        record_format: RecordFormat = "fmp4",
    ) -> None:
        """Patch ``record``/``recordPath``/``recordFormat`` of path ``name``.

        Works on any existing path (it changes recording only); raises MediaMTXNotFound
        when the path does not exist.
        """
        await self._client.patch_config_path(
            name, recording_patch(enabled, record_path, record_format)
        )
