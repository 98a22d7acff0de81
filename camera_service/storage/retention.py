"""Retention policy: model, persistence, planning and the periodic cleanup task.

* ``age``: files whose mtime is older than ``max_age_days`` are deleted.
* ``size``: the oldest files are deleted until recordings + snapshots total at most
  ``max_size_gb`` (1 GB = 10**9 bytes). Active files count towards the total but are never
  deleted.
* ``manual``: nothing is deleted automatically.

A disabled or manual policy makes :func:`cleanup` a no-op (``cleanup_executed: false``);
:class:`RetentionLoop` then skips its rounds. Both kinds of files are subject to the policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Literal, Self, TypedDict

from pydantic import BaseModel, ConfigDict, Field, model_validator

from camera_service.fsutil import StateFileError, atomic_write, load_recoverable, load_required
from camera_service.storage.errors import FileInUse, NotFound
from camera_service.storage.files import FileStore
from camera_service.storage.listing import KINDS, FileEntry
from camera_service.supervise import start_supervised

log = logging.getLogger(__name__)

GB = 10**9
POLICY_FILE = "retention.json"


class RetentionPolicy(BaseModel):
    """The stored retention policy (``set_retention_policy`` params)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy_type: Literal["age", "size", "manual"] = Field(
        description="age: delete files older than max_age_days; size: keep the total under "
        "max_size_gb by deleting the oldest; manual: never delete automatically"
    )
    max_age_days: float | None = Field(default=None, gt=0, le=36500)
    max_size_gb: float | None = Field(default=None, gt=0, le=1_000_000)
    enabled: bool = True

    @model_validator(mode="after")
    def _limits_present(self) -> Self:
        if self.policy_type == "age" and self.max_age_days is None:
            raise ValueError("policy_type 'age' needs max_age_days > 0")
        if self.policy_type == "size" and self.max_size_gb is None:
            raise ValueError("policy_type 'size' needs max_size_gb > 0")
        return self

    @property
    def active(self) -> bool:
        """True when the policy deletes anything at all."""
        return self.enabled and self.policy_type != "manual"


DEFAULT_POLICY = RetentionPolicy(policy_type="manual", enabled=False)


class CleanupResult(TypedDict):
    cleanup_executed: bool
    files_deleted: int
    space_freed: int
    message: str


# --------------------------------------------------------------------------- persistence


class PolicyStore:
    """``<state_dir>/retention.json``, written atomically with mode 0600."""

    def __init__(self, state_dir: Path | str, default: RetentionPolicy = DEFAULT_POLICY) -> None:
        self.path = Path(state_dir) / POLICY_FILE
        self._default = default
        self._policy = self._load()

    @property
    def policy(self) -> RetentionPolicy:
        return self._policy

    def reload(self) -> RetentionPolicy:
        """Re-read the file (SIGHUP: an operator restored or edited it). An unusable file
        keeps the current policy (and the file, to be fixed) and logs why."""
        try:
            self._policy = load_required(
                self.path, RetentionPolicy.model_validate, lambda: self._default
            )
        except StateFileError as exc:
            log.error("retention policy not reloaded, keeping the current one: %s", exc)
        return self._policy

    def _load(self) -> RetentionPolicy:
        """At start an unusable file is moved aside and the configured policy applies."""
        return load_recoverable(self.path, RetentionPolicy.model_validate, lambda: self._default)

    def save_sync(self, policy: RetentionPolicy) -> RetentionPolicy:
        """Persist ``policy`` (blocking) and make it current."""
        text = json.dumps(policy.model_dump(mode="json"), indent=2, sort_keys=True)
        atomic_write(self.path, text + "\n", mode=0o600)
        self._policy = policy
        return policy

    async def save(self, policy: RetentionPolicy) -> RetentionPolicy:
        """Persist ``policy`` off the event loop and make it current."""
        return await asyncio.to_thread(self.save_sync, policy)


# --------------------------------------------------------------------------- planning


def plan_cleanup(
    files: Iterable[FileEntry],
    policy: RetentionPolicy,
    now: float,
    active: Iterable[Path] = (),
) -> list[FileEntry]:
    """Files to delete under ``policy`` at epoch ``now``; oldest first; never ``active`` ones."""
    if not policy.active:
        return []
    protected = {Path(p) for p in active}
    ordered = sorted(files, key=lambda e: (e.mtime, e.filename))
    if policy.policy_type == "age":
        assert policy.max_age_days is not None
        cutoff = now - policy.max_age_days * 86400.0
        return [e for e in ordered if e.mtime < cutoff and e.path not in protected]
    assert policy.max_size_gb is not None
    return _plan_size(ordered, int(policy.max_size_gb * GB), protected)


def _plan_size(ordered: list[FileEntry], limit: int, protected: set[Path]) -> list[FileEntry]:
    total = sum(e.size for e in ordered)
    chosen: list[FileEntry] = []
    for entry in ordered:
        if total <= limit:
            break
        if entry.path in protected:
            continue
        chosen.append(entry)
        total -= entry.size
    return chosen


# --------------------------------------------------------------------------- execution


async def cleanup(
    store: FileStore,
    policy: RetentionPolicy,
    active: Iterable[Path] = (),
    now: float | None = None,
) -> CleanupResult:
    """Apply ``policy`` to recordings and snapshots (``cleanup_old_files``)."""
    if not policy.active:
        reason = "disabled" if not policy.enabled else "manual"
        return _result(False, 0, 0, f"retention policy is {reason}: nothing deleted")
    protected = {_resolve(p) for p in active}
    files = [e for kind in KINDS for e in await store.entries(kind)]
    plan = plan_cleanup(files, policy, time.time() if now is None else now, protected)
    deleted, freed = 0, 0
    for entry in plan:
        try:
            await store.delete(entry.kind, entry.filename, protected)
        except (NotFound, FileInUse) as exc:
            log.info("retention skipped %s/%s: %s", entry.kind, entry.filename, exc)
            continue
        deleted += 1
        freed += entry.size
    return _result(True, deleted, freed, f"deleted {deleted} file(s), freed {freed} bytes")


def _result(executed: bool, deleted: int, freed: int, message: str) -> CleanupResult:
    return {
        "cleanup_executed": executed,
        "files_deleted": deleted,
        "space_freed": freed,
        "message": message,
    }


def _resolve(path: Path) -> Path:
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):
        return Path(path)


# --------------------------------------------------------------------------- loop


class RetentionLoop:
    """Runs :func:`cleanup` with the current policy every ``interval_s`` seconds.

    The first round runs at start. An inactive (disabled / manual) policy makes a round a
    no-op; ``on_result`` still sees its result (``cleanup_executed: false``).
    """

    def __init__(
        self,
        interval_s: float,
        store: FileStore,
        policies: PolicyStore,
        active_files: Callable[[], Iterable[Path]] = lambda: (),
        on_result: Callable[[CleanupResult], Awaitable[None] | None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.interval_s = interval_s
        self._store = store
        self._policies = policies
        self._active_files = active_files
        self._on_result = on_result
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self.running:
            return
        self._stopping = asyncio.Event()
        self._task = start_supervised("retention-loop", self._run)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def run_once(self) -> CleanupResult:
        """One cleanup round with the current policy."""
        policy = self._policies.policy
        result = await cleanup(self._store, policy, self._active_files(), now=self._clock())
        if self._on_result is not None:
            maybe = self._on_result(result)
            if maybe is not None:
                await maybe
        return result

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.run_once()
            except Exception:
                log.exception("retention cleanup failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval_s)
