"""Retention: policy model, persistence, planning, cleanup and the periodic loop."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from camera_service.storage.files import FileStore
from camera_service.storage.listing import FileEntry
from camera_service.storage.retention import (
    GB,
    POLICY_FILE,
    CleanupResult,
    PolicyStore,
    RetentionLoop,
    RetentionPolicy,
    cleanup,
    plan_cleanup,
)

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
DAY = 86_400.0


def _put(directory: Path, name: str, age_days: float, size: int) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * size)
    mtime = NOW - age_days * DAY
    os.utime(path, (mtime, mtime))
    return path


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "recordings", tmp_path / "snapshots")


@pytest.fixture
def tree(store: FileStore) -> dict[str, Path]:
    """Recordings and snapshots of known ages (days) and sizes (bytes)."""
    rec, snap = store.directory("recordings"), store.directory("snapshots")
    return {
        "r10": _put(rec, "camera0_2025-12-22_00-00-00.mp4", 10, 4000),
        "r5": _put(rec, "camera0_2025-12-27_00-00-00.mp4", 5, 3000),
        "r1": _put(rec, "camera1_2025-12-31_00-00-00.mp4", 1, 2000),
        "seg8": _put(rec / "camera2", "2025-12-24_00-00-00-000001.mp4", 8, 1500),
        "s9": _put(snap, "camera0_2025-12-23_00-00-00.jpg", 9, 500),
        "s2": _put(snap, "camera1_2025-12-30_00-00-00.jpg", 2, 250),
        "s0": _put(snap, "camera1_2026-01-01_00-00-00.jpg", 0, 100),
    }


def _remaining(tree: dict[str, Path]) -> set[str]:
    return {key for key, path in tree.items() if path.exists()}


# ------------------------------------------------------------------ model


@pytest.mark.parametrize(
    "params",
    [
        {"policy_type": "age"},
        {"policy_type": "age", "max_age_days": 0},
        {"policy_type": "age", "max_age_days": -1},
        {"policy_type": "size"},
        {"policy_type": "size", "max_size_gb": 0},
        {"policy_type": "weekly", "max_age_days": 1},
        {"policy_type": "age", "max_age_days": 1, "surprise": True},
        {"policy_type": "age", "max_age_days": "soon"},
    ],
)
def test_invalid_policies_are_refused(params: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        RetentionPolicy.model_validate(params)


def test_valid_policies() -> None:
    assert RetentionPolicy(policy_type="age", max_age_days=0.5, enabled=True).active
    assert RetentionPolicy(policy_type="size", max_size_gb=1, enabled=True).active
    assert not RetentionPolicy(policy_type="size", max_size_gb=1, enabled=False).active
    assert not RetentionPolicy(policy_type="manual", enabled=True).active


# ------------------------------------------------------------------ persistence


async def test_policy_persists_across_instances(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = PolicyStore(state)
    assert first.policy.policy_type == "manual" and not first.policy.enabled
    policy = RetentionPolicy(policy_type="age", max_age_days=7, enabled=True)
    assert await first.save(policy) == policy
    path = state / POLICY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in state.iterdir()] == [POLICY_FILE]  # no temp files left
    assert PolicyStore(state).policy == policy


def test_corrupt_policy_file_falls_back_to_default(tmp_path: Path) -> None:
    (tmp_path / POLICY_FILE).write_text("{not json")
    assert PolicyStore(tmp_path).policy.policy_type == "manual"
    (tmp_path / POLICY_FILE).write_text('{"policy_type": "age"}')
    assert PolicyStore(tmp_path).policy.policy_type == "manual"


# ------------------------------------------------------------------ planning (pure)


def _entry(name: str, age_days: float, size: int) -> FileEntry:
    path = Path("/data") / name
    return FileEntry("recordings", name, path, None, size, NOW - age_days * DAY)


def test_plan_by_age_is_strict_and_skips_active() -> None:
    files = [_entry("a", 8, 1), _entry("b", 7, 1), _entry("c", 6.99, 1), _entry("d", 30, 1)]
    policy = RetentionPolicy(policy_type="age", max_age_days=7)
    plan = plan_cleanup(files, policy, NOW, active={Path("/data/d")})
    assert [e.filename for e in plan] == ["a"]


def test_plan_by_size_deletes_oldest_until_under_limit() -> None:
    files = [
        _entry(n, age, size)
        for n, age, size in [("new", 1, 300), ("old", 9, 400), ("mid", 5, 300), ("oldest", 10, 200)]
    ]
    limit = RetentionPolicy(policy_type="size", max_size_gb=700 / GB)
    # total 1200 > 700: oldest(200) → 1000, old(400) → 600 ≤ 700
    assert [e.filename for e in plan_cleanup(files, limit, NOW)] == ["oldest", "old"]
    # with "old" active it stays, and counts: oldest → 1000, mid → 700
    plan = plan_cleanup(files, limit, NOW, active={Path("/data/old")})
    assert [e.filename for e in plan] == ["oldest", "mid"]
    assert plan_cleanup(files, RetentionPolicy(policy_type="size", max_size_gb=1), NOW) == []


def test_plan_for_manual_or_disabled_is_empty() -> None:
    files = [_entry("a", 100, 10)]
    assert plan_cleanup(files, RetentionPolicy(policy_type="manual"), NOW) == []
    off = RetentionPolicy(policy_type="age", max_age_days=1, enabled=False)
    assert plan_cleanup(files, off, NOW) == []


# ------------------------------------------------------------------ cleanup (real files)


async def test_cleanup_by_age(store: FileStore, tree: dict[str, Path]) -> None:
    policy = RetentionPolicy(policy_type="age", max_age_days=6)
    result = await cleanup(store, policy, active={tree["r10"]}, now=NOW)
    assert _remaining(tree) == {"r10", "r5", "r1", "s2", "s0"}
    assert result == {
        "cleanup_executed": True,
        "files_deleted": 2,
        "space_freed": 1500 + 500,
        "message": result["message"],
    }


async def test_cleanup_by_size(store: FileStore, tree: dict[str, Path]) -> None:
    # total 11350; limit 5000; oldest first: r10 (active, kept), s9 (-500), seg8 (-1500),
    # r5 (-3000) → 6350, s2 (-250) → 6100, r1 (-2000) → 4100 ≤ 5000; s0 stays
    policy = RetentionPolicy(policy_type="size", max_size_gb=5000 / GB)
    result = await cleanup(store, policy, active={tree["r10"]}, now=NOW)
    assert _remaining(tree) == {"r10", "s0"}
    assert result["files_deleted"] == 5
    assert result["space_freed"] == 500 + 1500 + 3000 + 250 + 2000


async def test_cleanup_with_manual_policy_deletes_nothing(
    store: FileStore, tree: dict[str, Path]
) -> None:
    result = await cleanup(store, RetentionPolicy(policy_type="manual"), now=NOW)
    assert result["cleanup_executed"] is False and result["files_deleted"] == 0
    assert _remaining(tree) == set(tree)


# ------------------------------------------------------------------ loop


async def test_loop_runs_and_stops_cleanly(
    store: FileStore, tree: dict[str, Path], tmp_path: Path
) -> None:
    policies = PolicyStore(tmp_path / "state")
    policies.save_sync(RetentionPolicy(policy_type="age", max_age_days=3))
    results: asyncio.Queue[CleanupResult] = asyncio.Queue()

    async def collect(result: CleanupResult) -> None:
        await results.put(result)

    loop = RetentionLoop(
        3600, store, policies, lambda: {tree["r10"]}, on_result=collect, clock=lambda: NOW
    )
    loop.start()
    assert loop.running
    first = await asyncio.wait_for(results.get(), 10)
    await loop.stop()
    assert not loop.running
    assert first["files_deleted"] == 3  # r5, seg8, s9 (r10 active)
    assert _remaining(tree) == {"r10", "r1", "s2", "s0"}
    await loop.stop()  # idempotent


async def test_loop_with_inactive_policy_deletes_nothing(
    store: FileStore, tree: dict[str, Path], tmp_path: Path
) -> None:
    results: asyncio.Queue[CleanupResult] = asyncio.Queue()
    loop = RetentionLoop(3600, store, PolicyStore(tmp_path), on_result=results.put_nowait)
    loop.start()
    first = await asyncio.wait_for(results.get(), 10)
    await loop.stop()
    assert first["cleanup_executed"] is False
    assert _remaining(tree) == set(tree)
    with pytest.raises(ValueError):
        RetentionLoop(0, store, PolicyStore(tmp_path))


async def test_loop_survives_a_failing_round(store: FileStore, tmp_path: Path) -> None:
    results: asyncio.Queue[CleanupResult] = asyncio.Queue()
    calls = 0

    def active() -> set[Path]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")
        return set()

    loop = RetentionLoop(0.01, store, PolicyStore(tmp_path), active, results.put_nowait)
    loop.start()
    result = await asyncio.wait_for(results.get(), 10)
    await loop.stop()
    assert calls >= 2 and result["cleanup_executed"] is False
