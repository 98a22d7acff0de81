"""MediaMTXService without a server: desired path configuration, URLs, health, files."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from camera_service.cameras.model import Capabilities
from camera_service.cameras.registry import CameraIdError, CameraRegistry
from camera_service.config import MediaMTXConfig
from camera_service.events import EventBus
from camera_service.media.source import CaptureSource
from camera_service.mediamtx import segments
from camera_service.mediamtx.errors import StreamingDisabledError
from camera_service.mediamtx.service import MediaMTXService
from camera_service.mediamtx.streaming import start_streaming
from tests.support.fake_devices import fixture_capabilities
from tests.support.fake_mediamtx import SpecValidator, load_spec

VALIDATOR = SpecValidator(load_spec())


def make_service(tmp_path: Path, **config: Any) -> tuple[MediaMTXService, CameraRegistry]:
    cameras = CameraRegistry(schedule_expiry=False)
    cameras.load_configured(
        [{"id": "lab0", "input": "testsrc2=size=320x240:rate=15", "input_format": "lavfi"}]
    )
    cameras.add_external("gate", "rtsp://192.0.2.7/live", "rtsp")
    caps: Capabilities = fixture_capabilities("uvc_c920_capture")
    cameras.device_added("/dev/video0", caps, stable_key="usb-1")
    service = MediaMTXService(
        MediaMTXConfig(public_host="cams.example", on_demand_close_after=7, **config),
        cameras,
        EventBus(),
        state_dir=tmp_path / "state",
        recordings_dir=tmp_path / "rec",
    )
    return service, cameras


def conf_of(service: MediaMTXService, cameras: CameraRegistry, camera_id: str) -> dict[str, Any]:
    camera = cameras.get(camera_id)
    assert camera is not None
    conf = service.desired_conf(camera)
    assert conf is not None
    body = conf.to_body()
    assert VALIDATOR.schema_errors("PathConf", body) == []
    return body


def test_on_demand_publishers_and_pulled_sources(tmp_path: Path) -> None:
    service, cameras = make_service(tmp_path)
    usb = conf_of(service, cameras, "camera0")
    assert (
        "-f v4l2" in usb["runOnDemand"]
        and "-video_size 1280x720 -framerate 30" in usb["runOnDemand"]
    )
    assert (usb["runOnDemandCloseAfter"], usb["runOnInit"], usb["record"]) == ("7s", "", False)
    assert usb["recordPath"] == f"{(tmp_path / 'rec').resolve()}/.mediamtx/%path_%s_%f"
    lab = conf_of(service, cameras, "lab0")
    assert "-f lavfi" in lab["runOnDemand"]
    gate = conf_of(service, cameras, "gate")
    assert (gate["source"], gate["sourceOnDemand"]) == ("rtsp://192.0.2.7/live", True)
    assert "runOnDemand" not in gate


def test_streaming_and_recording_change_only_the_record_flag(tmp_path: Path) -> None:
    """MediaMTX restarts a path (cutting its readers) on any change but ``record*``: so
    streaming and recording in MediaMTX must not change anything else."""
    service, cameras = make_service(tmp_path)
    idle = {name: conf_of(service, cameras, name) for name in ("camera0", "gate", "lab0")}
    service.intents.streaming["camera0"] = datetime.now(UTC)
    service.intents.streaming["gate"] = datetime.now(UTC)
    service.intents.recording.add("lab0")
    for name, before in idle.items():
        after = conf_of(service, cameras, name)
        changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
        assert changed <= {"record"}, (name, changed)
    lab = conf_of(service, cameras, "lab0")
    assert (lab["record"], lab["recordFormat"], lab["recordDeleteAfter"]) == (True, "fmp4", "0s")
    assert lab["runOnDemand"] and lab["runOnInit"] == ""  # the held reader keeps it published
    assert conf_of(service, cameras, "gate")["sourceOnDemand"] is True
    cameras.device_removed("/dev/video0")
    idle_usb = conf_of(service, cameras, "camera0")
    assert (idle_usb["runOnDemand"], idle_usb["runOnInit"]) == ("", "")


def test_reserved_path_names_never_become_cameras(tmp_path: Path) -> None:
    """Paths are named by camera id, so MediaMTX's reserved names are refused as ids."""
    _, cameras = make_service(tmp_path)
    for reserved in ("all", "all_others"):
        with pytest.raises(CameraIdError):
            cameras.load_configured([{"id": reserved, "input": "x", "input_format": "lavfi"}])
        assert cameras.get(reserved) is None


def test_urls_health_and_capabilities(tmp_path: Path) -> None:
    service, cameras = make_service(tmp_path, rtsp_port=9554, record_with="mediamtx")
    camera = cameras.get("lab0")
    assert camera is not None
    assert service.streams_for(camera)["rtsp"] == "rtsp://cams.example:9554/lab0"
    assert service.stream_metrics(camera) == {}
    assert service.health().status == "starting"
    assert service.capabilities() == ["streaming", "mediamtx-recording"]
    stream = service.stream_source(CaptureSource("lab0", "x", exclusive=True))
    assert stream.input == "rtsp://127.0.0.1:9554/lab0" and not stream.exclusive
    off, _ = make_service(tmp_path, enabled=False)
    assert off.streams_for(camera) == {}
    assert off.health().status == "disabled" and off.capabilities() == []
    assert not off.path_usable("lab0")  # recordings read the device


async def test_disabled_service_fails_streaming_calls(tmp_path: Path) -> None:
    service, cameras = make_service(tmp_path, enabled=False)
    camera = cameras.get("lab0")
    assert camera is not None
    with pytest.raises(StreamingDisabledError):
        await start_streaming(service, camera)
    await service.start()
    await service.stop()


def test_staged_segment_names_are_timezone_free() -> None:
    start = segments.staged_start("cam0_1767225600_250000.mp4", "cam0")
    assert start == datetime(2026, 1, 1, 0, 0, 0, 250000, tzinfo=UTC)
    assert segments.staged_start("cam01_1767225600_250000.mp4", "cam0") is None
    assert segments.staged_start("cam0_2026-01-01_00-00-00.mp4", "cam0") is None


def mvhd_file(duration_ms: int) -> bytes:
    """The head of a MediaMTX fMP4 segment: ftyp, then moov starting with a v0 mvhd."""
    ftyp = (24).to_bytes(4, "big") + b"ftypmp42" + b"\0\0\0\1" + b"mp41mp42"
    mvhd = (108).to_bytes(4, "big") + b"mvhd" + bytes(4) + bytes(8)
    mvhd += (1000).to_bytes(4, "big") + duration_ms.to_bytes(4, "big") + bytes(80)
    moov = (8 + len(mvhd)).to_bytes(4, "big") + b"moov" + mvhd
    return ftyp + moov


def test_fmp4_finalized_reads_the_mvhd_duration() -> None:
    assert segments.fmp4_finalized(mvhd_file(3000))
    assert not segments.fmp4_finalized(mvhd_file(0))  # MediaMTX writes it when it closes
    assert not segments.fmp4_finalized(b"")
    assert not segments.fmp4_finalized(b"\0\0\0\x08free" + bytes(64))


def test_segments_get_utc_names_by_hard_link_and_staging_is_settled(tmp_path: Path) -> None:
    staging = segments.staging_dir(tmp_path)
    staging.mkdir()
    staged = staging / "cam0_1767225600_000000.mp4"
    staged.write_bytes(b"abc")
    (tmp_path / "cam0_2026-01-01_00-00-00.mp4").write_bytes(b"taken")
    found = segments.staged_segments(tmp_path, "cam0")
    assert list(found) == [staged]
    visible = segments.link_segment(staged, tmp_path, "cam0", found[staged])
    assert visible.name == "cam0_2026-01-01_00-00-00_1.mp4"
    assert os.path.samefile(visible, staged)
    left = staging / "cam0_1767225660_000000.mp4"  # never linked (daemon stopped)
    left.write_bytes(b"de")
    made = segments.settle_staging(tmp_path, "cam0")
    assert [p.name for p in made] == ["cam0_2026-01-01_00-01-00.mp4"]
    assert list(staging.iterdir()) == [] and visible.read_bytes() == b"abc"
    assert segments.staged_segments(tmp_path / "missing", "cam0") == {}
