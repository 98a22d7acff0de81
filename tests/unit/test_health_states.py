"""Contract 1.1 component states and the storage / ffmpeg probes (pure, no daemon)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from camera_service.health import ComponentStatus, Health
from camera_service.storage.faults import FfmpegHealth, StorageHealth, classify
from camera_service.storage.usage import DiskUsage


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("healthy", "RUNNING"),
        ("degraded", "RUNNING"),
        ("unhealthy", "ERROR"),
        ("disabled", "STOPPED"),
        ("starting", "STARTING"),
    ],
)
def test_component_states_map_onto_the_contract_strings(state: str, expected: str) -> None:
    health = Health()
    assert health.run_state(ComponentStatus(state)) == expected  # type: ignore[arg-type]
    health.stopping = True
    stopping = "STOPPED" if state == "disabled" else "STOPPING"
    assert health.run_state(ComponentStatus(state)) == stopping  # type: ignore[arg-type]


def test_problems_name_the_component_and_the_reason() -> None:
    health = Health()
    health.register("storage", lambda: ComponentStatus("unhealthy", {"reason": "read-only"}))
    health.register("ffmpeg", lambda: ComponentStatus("healthy"))
    assert health.problems() == ["storage: read-only"]
    assert health.overall() == "unhealthy"


def test_storage_thresholds(tmp_path: Path) -> None:
    dirs = {"recordings": tmp_path}
    states = {
        used: StorageHealth(
            dirs, 80, 95, disk_usage=lambda _p, u=used: DiskUsage(100, u, 100 - u)
        ).probe()
        for used in (10, 85, 97)
    }
    assert states[10].status == "healthy"
    assert states[85].status == "degraded" and "85.0% full" in states[85].details["reason"]
    assert states[97].status == "degraded" and "3 bytes free" in states[97].details["reason"]
    assert states[97].details["critical"] is True


def test_ffmpeg_probe_reports_names_not_paths() -> None:
    missing = FfmpegHealth("/opt/x/ffmpeg", "ffprobe", which=lambda name: None).probe()
    assert missing.status == "unhealthy"
    assert missing.details["reason"] == "ffmpeg executable 'ffmpeg' not found"
    no_probe = FfmpegHealth("ffmpeg", "ffprobe", which=lambda n: n if n == "ffmpeg" else None)
    assert no_probe.probe().status == "degraded"


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (errno.ENOSPC, "no_space"),
        (errno.EDQUOT, "no_space"),
        (errno.EROFS, "unwritable"),
        (errno.EACCES, "unwritable"),
        (errno.EIO, "unwritable"),
        (errno.ENOENT, None),
    ],
)
def test_classify(code: int, kind: str | None) -> None:
    fault = classify(OSError(code, "x", "/a/b"))
    assert (fault.kind if fault else None) == kind
    assert classify(ValueError("no")) is None
