"""PathProvisioner against the fake MediaMTX API: idempotency, ownership, reconcile, recording."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from camera_service.mediamtx.client import MediaMTXClient, MediaMTXNotFound, MediaMTXUnavailable
from camera_service.mediamtx.models import PathConf
from camera_service.mediamtx.pathconf import camera_path_conf, recording_fields, source_path_conf
from camera_service.mediamtx.paths import (
    PathConflict,
    PathOwnership,
    PathProvisioner,
    ProvisionAction,
)
from tests.support.fake_mediamtx import FakeMediaMTX

WRITES = ("configPathsAdd", "configPathsReplace", "configPathsPatch", "configPathsDelete")


@pytest.fixture
async def fake() -> AsyncIterator[FakeMediaMTX]:
    async with FakeMediaMTX() as server:
        yield server


@pytest.fixture
async def client(fake: FakeMediaMTX) -> AsyncIterator[MediaMTXClient]:
    async with MediaMTXClient(fake.url, timeout=2.0) as mtx:
        yield mtx


@pytest.fixture
def prov(client: MediaMTXClient) -> PathProvisioner:
    return PathProvisioner(client)


def writes(fake: FakeMediaMTX) -> list[tuple[str, str]]:
    return [
        (r.operation_id, r.path.rsplit("/", 1)[-1])
        for r in fake.requests
        if r.operation_id in WRITES
    ]


def lavfi(rate: int = 10, close_after: float = 10) -> PathConf:
    return camera_path_conf(f"testsrc2=size=320x240:rate={rate}", "lavfi", close_after=close_after)


async def test_ensure_adds_then_is_idempotent_then_replaces(
    fake: FakeMediaMTX, prov: PathProvisioner
) -> None:
    name = prov.name_for("cam0")
    assert await prov.ensure(name, lavfi()) is ProvisionAction.ADDED
    assert await prov.ensure(name, lavfi()) is ProvisionAction.UNCHANGED
    assert writes(fake) == [("configPathsAdd", name)]

    assert await prov.ensure(name, lavfi(rate=15)) is ProvisionAction.REPLACED
    assert "rate=15" in fake.config_paths[name]["runOnDemand"]
    assert await prov.ensure(name, lavfi(rate=15)) is ProvisionAction.UNCHANGED
    assert writes(fake) == [("configPathsAdd", name), ("configPathsReplace", name)]


async def test_ensure_duration_spelling_does_not_cause_replace(
    fake: FakeMediaMTX, prov: PathProvisioner
) -> None:
    name = prov.name_for("cam0")
    await prov.ensure(name, lavfi(close_after=60))
    fake.config_paths[name]["runOnDemandCloseAfter"] = "60s"  # server spelling differs
    assert await prov.ensure(name, lavfi(close_after=60)) is ProvisionAction.UNCHANGED


async def test_ensure_handles_concurrent_add_of_our_path(
    fake: FakeMediaMTX, prov: PathProvisioner
) -> None:
    name = prov.name_for("cam0")
    await prov.ownership.claim(name)  # ours from an earlier run
    fake.set_config_path(name, source="rtsp://old/s")
    fake.fail_next(1, status=404, message="path not found", operation="configPathsGet")
    assert await prov.ensure(name, lavfi()) is ProvisionAction.REPLACED
    assert fake.config_paths[name]["source"] == "publisher"


async def test_concurrent_add_by_someone_else_is_a_conflict(
    fake: FakeMediaMTX, prov: PathProvisioner
) -> None:
    fake.set_config_path("cam0", source="rtsp://operator/s")
    fake.fail_next(1, status=404, message="path not found", operation="configPathsGet")
    with pytest.raises(PathConflict):
        await prov.ensure("cam0", lavfi())
    assert fake.config_paths["cam0"]["source"] == "rtsp://operator/s"
    assert not prov.owns("cam0")


async def test_ensure_and_remove_refuse_foreign_paths(
    fake: FakeMediaMTX, client: MediaMTXClient, prov: PathProvisioner
) -> None:
    fake.set_config_path("manual", source="rtsp://operator/cam")
    before = dict(fake.config_paths["manual"])
    with pytest.raises(PathConflict, match="manual"):
        await prov.ensure("manual", lavfi())
    with pytest.raises(ValueError):
        await prov.remove("manual")
    report = await prov.reconcile({"manual": lavfi()})
    assert list(report.failed) == ["manual"] and not report.changed
    assert fake.config_paths["manual"] == before
    assert writes(fake) == []
    for bad in ("all_others", "../x"):
        with pytest.raises(ValueError):
            await prov.ensure(bad, lavfi())


async def test_ownership_is_persisted_and_claimed_before_add(
    fake: FakeMediaMTX, client: MediaMTXClient, tmp_path: Path
) -> None:
    file = tmp_path / "mediamtx_paths.json"
    prov = PathProvisioner(client, ownership=PathOwnership(file))
    fake.drop_next(1, operation="configPathsAdd")  # lost answer: did the add happen?
    with pytest.raises(MediaMTXUnavailable):
        await prov.ensure("cam0", lavfi())
    assert PathOwnership(file).owns("cam0")  # claimed anyway: a superset
    report = await PathProvisioner(client, ownership=PathOwnership(file)).reconcile({})
    assert report.removed == [] and not PathOwnership(file).owns("cam0")  # stale claim dropped


async def test_remove(fake: FakeMediaMTX, prov: PathProvisioner) -> None:
    name = prov.name_for("cam0")
    await prov.ensure(name, lavfi())
    assert await prov.remove(name) is True
    assert name not in fake.config_paths
    assert await prov.remove(name) is False


async def test_reconcile_after_restart(fake: FakeMediaMTX, prov: PathProvisioner) -> None:
    """API-made paths die with MediaMTX; paths that exist under our names in the new
    process come from mediamtx.yml, so they are never replaced or deleted (the claims go)."""
    a, b, c, old = (prov.name_for(x) for x in ("a", "b", "c", "old"))
    desired = {
        a: lavfi(),
        b: source_path_conf("rtsp://10.0.0.9/live"),
        c: lavfi(rate=5),
    }
    await prov.ownership.claim("gone")  # a camera of ours that is gone since
    first = await prov.reconcile({a: desired[a], b: desired[b], old: lavfi()})
    assert (first.added, first.removed) == ([a, b, old], [])
    assert not prov.owns("gone")  # the claim without a path is dropped

    # MediaMTX restarts: API-made paths are gone; its config file has a hand-made path
    # and two paths under names we once owned.
    await fake.stop()
    await fake.start(reset=True)
    fake.set_config_path("manual", source="rtsp://operator/cam")
    fake.set_config_path(old, source="rtsp://gone/cam")
    fake.set_config_path(b, source="rtsp://10.0.0.9/other")
    static = {n: dict(fake.config_paths[n]) for n in ("manual", old, b)}
    fake.requests.clear()

    report = await prov.reconcile(desired)
    assert (report.added, report.removed, report.replaced) == ([a, c], [], [])
    assert list(report.failed) == [b] and "not created by camera-service" in report.failed[b]
    assert {n: fake.config_paths[n] for n in static} == static
    assert all(name not in static for _, name in writes(fake))
    assert prov.ownership.names() == {a, c}
    with pytest.raises(PathConflict):
        await prov.ensure(b, desired[b])

    fake.requests.clear()
    again = await prov.reconcile(desired)
    assert (again.unchanged, again.changed) == ([a, c], False)
    assert writes(fake) == []


async def test_reconcile_twice_is_unchanged_with_mediamtx_echoes(
    fake: FakeMediaMTX, prov: PathProvisioner
) -> None:
    """The fake echoes durations like MediaMTX (0s → "", 24h → 1d): reconcile must still see
    its own paths as unchanged (it replaced every path on every run before)."""
    conf = recording_fields(lavfi(), "/r/.mediamtx/%path_%s_%f", enabled=False)
    conf.run_on_demand_close_after = "0s"
    assert (await prov.reconcile({"a": conf})).added == ["a"]
    assert fake.config_paths["a"]["recordDeleteAfter"] == ""
    assert fake.config_paths["a"]["recordSegmentDuration"] == "1d"
    fake.requests.clear()
    again = await prov.reconcile({"a": conf})
    assert (again.unchanged, again.changed, writes(fake)) == (["a"], False, [])


async def test_reconcile_reports_refused_paths_and_continues(
    fake: FakeMediaMTX, prov: PathProvisioner
) -> None:
    bad = PathConf(source="publisher", source_on_demand=True)  # MediaMTX refuses this
    good = lavfi()
    report = await prov.reconcile({prov.name_for("bad"): bad, prov.name_for("good"): good})
    assert list(report.failed) == [prov.name_for("bad")]
    assert "sourceOnDemand" in report.failed[prov.name_for("bad")]
    assert report.added == [prov.name_for("good")]


async def test_reconcile_raises_when_mediamtx_is_down(
    fake: FakeMediaMTX, prov: PathProvisioner
) -> None:
    await fake.stop()
    with pytest.raises(MediaMTXUnavailable):
        await prov.reconcile({prov.name_for("a"): lavfi()})


async def test_set_recording(fake: FakeMediaMTX, prov: PathProvisioner) -> None:
    name = prov.name_for("cam0")
    await prov.ensure(name, lavfi())
    await prov.set_recording(name, True, "/rec/%path/%Y-%m-%d_%H-%M-%S-%f")
    stored = fake.config_paths[name]
    assert (stored["record"], stored["recordPath"], stored["recordFormat"]) == (
        True,
        "/rec/%path/%Y-%m-%d_%H-%M-%S-%f",
        "fmp4",
    )
    assert stored["runOnDemand"]  # patch left the rest alone
    [patch] = fake.requests_for("configPathsPatch")
    assert patch.body == {
        "record": True,
        "recordPath": "/rec/%path/%Y-%m-%d_%H-%M-%S-%f",
        "recordFormat": "fmp4",
    }

    # Reconcile with the same desired conf keeps the recording running.
    report = await prov.reconcile({name: lavfi()})
    assert report.unchanged == [name]
    assert fake.config_paths[name]["record"] is True

    await prov.set_recording(name, False)
    assert fake.config_paths[name]["record"] is False
    with pytest.raises(MediaMTXNotFound):
        await prov.set_recording(prov.name_for("missing"), True, "/rec/%path")
