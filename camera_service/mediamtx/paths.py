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
from collections.abc import Iterable, Mapping
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
from camera_service.mediamtx.pathconf import conf_matches, recording_patch, restarts_path

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
    #: Replaced with a change MediaMTX applies by closing the path (readers are cut).
    REPLACED = "replaced"
    #: Replaced with a ``record*``-only change, applied in place (readers stay).
    RELOADED = "reloaded"
    UNCHANGED = "unchanged"


@dataclass
class ReconcileReport:
    """What :meth:`PathProvisioner.reconcile` did (names sorted per list)."""

    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    reloaded: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    #: Paths MediaMTX refused (400) or that we do not own: name -> reason.
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.replaced or self.reloaded or self.removed)

    def record(self, name: str, action: ProvisionAction) -> None:
        {
            ProvisionAction.ADDED: self.added,
            ProvisionAction.REPLACED: self.replaced,
            ProvisionAction.RELOADED: self.reloaded,
            ProvisionAction.UNCHANGED: self.unchanged,
        }[action].append(name)


class PathConflict(Exception):
    """A path of that name exists in MediaMTX and camera-service did not create it."""

    def __init__(self, name: str) -> None:
        super().__init__(conflict_reason(name))
        self.name = name


_Claims = dict[str, str | None]


def _parse_ownership(data: object) -> _Claims:
    """name → ``started`` of the MediaMTX process it was added to (None: unknown)."""
    paths = data.get("paths") if isinstance(data, dict) else None
    if not isinstance(paths, list):
        raise ValueError("no 'paths' list")
    assert isinstance(data, dict)
    started = data.get("started")
    started = started if isinstance(started, dict) else {}
    names = {name for name in paths if isinstance(name, str) and _NAME_RE.match(name)}
    return {n: v if isinstance(v := started.get(n), str) else None for n in names}


class PathOwnership:
    """The names of the MediaMTX paths camera-service created.

    In memory only without ``file``; with it, loaded at construction and rewritten
    atomically (JSON ``{"version": 1, "paths": [...], "started": {name: started}}``, mode
    0600) on every change. An unusable file is moved aside (``.corrupt-<time>``) and the
    record starts empty: paths of a lost record are then treated as foreign, never deleted.

    Each claim remembers the ``started`` time (``/v3/info``) of the MediaMTX process the
    path was added to. API-made paths die with that process, so a path that exists under a
    claimed name in a process started at another time comes from ``mediamtx.yml``:
    :meth:`stale` names those claims, and they are dropped instead of the operator's path
    being replaced or deleted.
    """

    def __init__(self, file: Path | None = None) -> None:
        self.file = file
        self._started: dict[str, str | None] = {}
        self._names: set[str] = self._load(file) if file is not None else set()
        self._lock = asyncio.Lock()

    def _load(self, file: Path) -> set[str]:
        self._started = load_recoverable(file, _parse_ownership, dict)
        return set(self._started)

    def owns(self, name: str) -> bool:
        return name in self._names

    def names(self) -> frozenset[str]:
        return frozenset(self._names)

    def stale(self, name: str, started: str | None) -> bool:
        """The claim on ``name`` was made against another MediaMTX process than the one
        started at ``started`` (unknown times never count as stale)."""
        claimed = self._started.get(name)
        return name in self._names and None not in (claimed, started) and claimed != started

    async def claim(self, name: str, started: str | None = None) -> None:
        if self._started.get(name) != started or name not in self._names:
            self._started[name] = started
            self._names = self._names | {name}
            await self._save()

    async def release(self, *names: str) -> None:
        if not set(names) & self._names:
            return
        self._names = self._names - set(names)
        for name in names:
            self._started.pop(name, None)
        await self._save()

    async def _save(self) -> None:
        if self.file is None:
            return
        async with self._lock:  # one writer at a time, always the latest state
            started = {n: s for n, s in sorted(self._started.items()) if s and n in self._names}
            record: dict[str, object] = {
                "version": _OWNERSHIP_VERSION,
                "paths": sorted(self._names),
            }
            if started:
                record["started"] = started
            await asyncio.to_thread(atomic_write, self.file, json.dumps(record) + "\n")


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
        self._now_started: str | None = None

    def name_for(self, camera_id: str) -> str:
        return path_name_for(camera_id)

    def owns(self, name: str) -> bool:
        return self.ownership.owns(name)

    async def _started(self) -> str | None:
        """``started`` of the MediaMTX process answering now."""
        return (await self._client.info()).started

    async def ensure(self, name: str, conf: PathConf) -> ProvisionAction:
        """Make path ``name`` match ``conf``: add it, replace it, or leave it (idempotent).

        Raises :class:`PathConflict` when the path exists and is not ours (never created by
        camera-service, or a ``mediamtx.yml`` path under a name we claimed in an earlier
        MediaMTX process; that claim is dropped).
        """
        _check_name(name)
        started = await self._started()
        try:
            actual: PathConf | None = await self._client.get_config_path(name)
        except MediaMTXNotFound:
            actual = None
        if actual is not None and self.ownership.stale(name, started):
            await self._forget_static([name])
        if actual is not None and not self.owns(name):
            raise PathConflict(name)
        self._now_started = started
        return await self._apply(name, conf, actual)

    async def _apply(self, name: str, conf: PathConf, actual: PathConf | None) -> ProvisionAction:
        if actual is None:
            owned_before = self.owns(name)
            # Claimed before the add (the record stays a superset), with the process it is
            # added to.
            await self.ownership.claim(name, self._now_started)
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
        # MediaMTX answers 200 before it applies the write, and a replace of a missing path
        # creates it (internal/api/api.go, internal/core/path_manager.go): readiness after
        # a write is checked by the caller (streaming.wait_ready), never assumed.
        try:
            await self._client.replace_config_path(name, conf)
        except MediaMTXNotFound:  # older releases: deleted concurrently
            await self._client.add_config_path(name, conf)
            return ProvisionAction.ADDED
        if restarts_path(actual, conf):
            return ProvisionAction.REPLACED
        return ProvisionAction.RELOADED

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
        started = self._now_started = await self._started()
        current = {
            conf.name: conf for conf in await self._client.list_all_config_paths() if conf.name
        }
        await self._forget_static(n for n in current if self.ownership.stale(n, started))
        plan = plan_reconcile(desired, current, self.ownership.names())
        report = ReconcileReport(unchanged=list(plan.unchanged), failed=dict(plan.conflicts))
        await self.ownership.release(*plan.release)
        for name in plan.remove:
            await self._remove_stale(name, report)
        for name in sorted({*plan.add, *plan.replace}):
            conf = plan.add.get(name) or plan.replace[name]
            await self._reconcile_one(name, conf, current.get(name), report)
        return report

    async def _forget_static(self, names: Iterable[str]) -> None:
        """Drop claims on paths that exist in a MediaMTX process other than the one we added
        them to: they come from its configuration file, and are left alone."""
        static = sorted(names)
        if static:
            log.warning(
                "MediaMTX paths %s come from its configuration file (MediaMTX restarted since "
                "camera-service added them); they are left alone",
                static,
            )
            await self.ownership.release(*static)

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
