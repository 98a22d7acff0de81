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
from camera_service.mediamtx.errors import StreamingDisabledError
from camera_service.mediamtx.recording import segment_files
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
    assert usb["recordPath"] == f"{(tmp_path / 'rec').resolve()}/%path_%Y-%m-%d_%H-%M-%S"
    lab = conf_of(service, cameras, "lab0")
    assert "-f lavfi" in lab["runOnDemand"]
    gate = conf_of(service, cameras, "gate")
    assert (gate["source"], gate["sourceOnDemand"]) == ("rtsp://192.0.2.7/live", True)
    assert "runOnDemand" not in gate


def test_streaming_recording_and_disconnected_states(tmp_path: Path) -> None:
    service, cameras = make_service(tmp_path)
    service.intents.streaming["camera0"] = datetime.now(UTC)
    service.intents.streaming["gate"] = datetime.now(UTC)
    usb = conf_of(service, cameras, "camera0")
    assert usb["runOnInit"] and usb["runOnDemand"] == "" and usb["runOnInitRestart"]
    assert conf_of(service, cameras, "gate")["sourceOnDemand"] is False
    service.intents.recording.add("lab0")
    lab = conf_of(service, cameras, "lab0")
    assert (lab["record"], lab["recordFormat"], lab["recordDeleteAfter"]) == (True, "fmp4", "0s")
    assert lab["runOnInit"]  # MediaMTX records only a published stream
    cameras.device_removed("/dev/video0")
    idle = conf_of(service, cameras, "camera0")
    assert (idle["runOnDemand"], idle["runOnInit"]) == ("", "")


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


def test_segment_files_match_only_the_camera(tmp_path: Path) -> None:
    for name in (
        "cam0_2030-01-01_00-00-00.mp4",
        "cam0_2030-01-01_00-00-00.mkv",
        "cam01_2030-01-01_00-00-00.mp4",
        "cam0_latest.mp4",
    ):
        (tmp_path / name).write_bytes(b"abc")
    assert segment_files(tmp_path, "cam0") == {tmp_path / "cam0_2030-01-01_00-00-00.mp4": 3}
    assert segment_files(tmp_path / "missing", "cam0") == {}
    assert os.path.exists(tmp_path / "cam01_2030-01-01_00-00-00.mp4")
