"""Camera controls and capture settings end to end: a daemon with fake V4L2 cameras (the
discovery seam plus a fake kernel for the control ioctls), real WebSocket clients, and a real
FFmpeg process as the capture whose start makes the camera reset its focus."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from camera_service.cameras import v4l2_abi as abi
from camera_service.client import CameraClient, RpcCallError
from camera_service.media.process import ProcessHandle
from tests.support.daemon import RunningDaemon, running_daemon
from tests.support.fake_controls import FakeCameraRig
from tests.support.fake_mediamtx import FakeMediaMTX
from tests.support.media import FAST_STOP

WAIT = 5.0


@pytest.fixture
def rig() -> FakeCameraRig:
    return FakeCameraRig()


@asynccontextmanager
async def _daemon(
    tmp_path: Path, rig: FakeCameraRig, overrides: dict[str, Any] | None = None
) -> AsyncIterator[RunningDaemon]:
    async with running_daemon(tmp_path, overrides, **rig.seams) as daemon:
        await asyncio.wait_for(daemon.app.discovery.first_scan_done.wait(), WAIT)
        yield daemon


async def _note(client: CameraClient, method: str, **match: Any) -> dict[str, Any]:
    """The next notification ``method`` whose params contain ``match`` (others skipped)."""

    async def find() -> dict[str, Any]:
        while True:
            note = await client.next_notification(WAIT)
            params = note["params"]
            if note["method"] == method and all(params.get(k) == v for k, v in match.items()):
                return params

    return await asyncio.wait_for(find(), WAIT)


async def _connected(client: CameraClient, device: str) -> None:
    cameras = await client.call("get_camera_list")
    if not any(c["device"] == device and c["status"] == "CONNECTED" for c in cameras["cameras"]):
        await _note(client, "camera_status_update", device=device, status="CONNECTED")


async def test_controls_set_persist_and_reapply_after_replug_and_capture_start(
    tmp_path: Path, rig: FakeCameraRig
) -> None:
    first = rig.plug(0)
    async with (
        _daemon(tmp_path, rig) as daemon,
        daemon.client("operator") as op,
        daemon.client("viewer") as viewer,
    ):
        await _connected(op, "camera0")
        listed = await viewer.call("get_camera_controls", {"device": "camera0"})
        by_name = {c["name"]: c for c in listed["controls"]}
        assert by_name["focus_absolute"]["flags"] == ["inactive"]
        assert by_name["power_line_frequency"]["menu"][1] == {"value": 1, "label": "50 Hz"}
        assert by_name["focus_automatic_continuous"]["value"] is True

        with pytest.raises(RpcCallError) as denied:
            await viewer.call(
                "set_camera_controls", {"device": "camera0", "controls": {"brightness": 10}}
            )
        assert denied.value.code == -32002

        result = await op.call(
            "set_camera_controls",
            {
                "device": "camera0",
                "controls": {
                    "focus_absolute": 120,
                    "focus_automatic_continuous": False,
                    "brightness": 999,
                    "privacy": True,
                },
            },
        )
        assert result["applied"] == {"focus_automatic_continuous": False, "focus_absolute": 120}
        assert result["rejected"] == {
            "brightness": "out of range (0..255)",
            "privacy": "read-only control",
        }
        note = await _note(viewer, "camera_controls", reason="set")
        assert note["device"] == "camera0" and note["controls"] == result["applied"]
        assert first.value_of(abi.CID_FOCUS_ABSOLUTE) == 120
        state = json.loads((tmp_path / "state" / "camera_state.json").read_text())
        assert state["cameras"][0]["controls"] == {
            "focus_absolute": 120,
            "focus_automatic_continuous": False,
        }

        # Replug on the same port, another node number: same id, values written again.
        rig.unplug(0)
        await _note(op, "camera_status_update", device="camera0", status="DISCONNECTED")
        second = rig.plug(4)
        assert second.value_of(abi.CID_FOCUS_ABSOLUTE) == 0  # fresh device: defaults
        note = await _note(op, "camera_controls", device="camera0", reason="plugged")
        assert note["controls"] == {"focus_automatic_continuous": False, "focus_absolute": 120}
        assert second.value_of(abi.CID_FOCUS_AUTO) == 0
        assert second.value_of(abi.CID_FOCUS_ABSOLUTE) == 120

        # A capture starts: the camera resets focus on STREAMON; once frames flow the
        # daemon writes the values again.
        def stream_on(handle: ProcessHandle) -> None:
            if handle.camera_id == "camera0" and handle.reader:
                second.stream_on()

        daemon.app.supervisor.add_start_listener(stream_on)
        capture = await daemon.app.supervisor.start(
            [
                "ffmpeg",
                "-hide_banner",
                "-loglevel",
                "error",
                "-progress",
                "pipe:1",
                "-re",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=320x240:rate=10",
                "-f",
                "null",
                "-",
            ],
            camera_id="camera0",
            role="recording",
            reader=True,
            capture_progress=True,
        )
        try:
            note = await _note(op, "camera_controls", reason="capture_started")
            assert second.streaming == 1
            assert note["controls"]["focus_absolute"] == 120
            assert second.value_of(abi.CID_FOCUS_ABSOLUTE) == 120
            assert second.value_of(abi.CID_FOCUS_AUTO) == 0
        finally:
            await daemon.app.supervisor.stop(capture)

        # Reset: defaults on the device, persisted values gone.
        reset = await op.call("reset_camera_controls", {"device": "camera0"})
        assert reset["applied"] == {"focus_automatic_continuous": True}
        assert {c["name"]: c["value"] for c in reset["controls"]}[
            "focus_automatic_continuous"
        ] is True
        assert second.value_of(abi.CID_FOCUS_AUTO) == 1
        state = json.loads((tmp_path / "state" / "camera_state.json").read_text())
        assert state["cameras"][0]["controls"] == {}
        await _note(op, "camera_controls", reason="reset")


async def test_config_controls_apply_at_plug_and_api_values_win(
    tmp_path: Path, rig: FakeCameraRig
) -> None:
    overrides = {
        "cameras": {
            "devices": {"camera0": {"controls": {"brightness": 100, "power_line_frequency": 1}}}
        }
    }
    device = rig.plug(0)
    async with _daemon(tmp_path, rig, overrides) as daemon, daemon.client("operator") as op:
        await _connected(op, "camera0")
        if device.value_of(abi.CID_BRIGHTNESS) != 100:
            await _note(op, "camera_controls", reason="plugged")
        assert device.value_of(abi.CID_BRIGHTNESS) == 100
        assert device.value_of(abi.CID_POWER_LINE_FREQUENCY) == 1
        await op.call("set_camera_controls", {"device": "camera0", "controls": {"brightness": 50}})
        rig.unplug(0)
        await _note(op, "camera_status_update", device="camera0", status="DISCONNECTED")
        with pytest.raises(RpcCallError) as away:
            await op.call("get_camera_controls", {"device": "camera0"})
        assert away.value.code == -32020
        again = rig.plug(0)
        await _note(op, "camera_controls", device="camera0", reason="plugged")
        assert again.value_of(abi.CID_BRIGHTNESS) == 50  # the API value wins
        assert again.value_of(abi.CID_POWER_LINE_FREQUENCY) == 1  # config still applies
        # persist: false changes the camera now but is not remembered
        await op.call(
            "set_camera_controls",
            {"device": "camera0", "controls": {"gain": 7}, "persist": False},
        )
        assert again.value_of(abi.CID_GAIN) == 7
        # MediaMTX's publisher streams the camera (start_streaming ready): the camera resets
        # its focus on STREAMON, the daemon writes the desired values again.
        await op.call(
            "set_camera_controls",
            {
                "device": "camera0",
                "controls": {"focus_automatic_continuous": False, "focus_absolute": 60},
            },
        )
        again.stream_on()
        assert again.value_of(abi.CID_FOCUS_AUTO) == 1
        for listener in daemon.app.mediamtx.stream_ready_listeners:
            listener("camera0")
        await _note(op, "camera_controls", device="camera0", reason="capture_started")
        assert again.value_of(abi.CID_FOCUS_AUTO) == 0
        assert again.value_of(abi.CID_FOCUS_ABSOLUTE) == 60
        # A one-frame snapshot capture: no progress reports, but FFmpeg (-loglevel info)
        # prints its "Input #0, video4linux2" line once the camera streams. A shell stands in
        # for that FFmpeg here (the fake device cannot be opened by a real one).
        again.stream_on()
        assert again.value_of(abi.CID_FOCUS_ABSOLUTE) == 0
        snapshot = await daemon.app.supervisor.start(
            [
                "sh",
                "-c",
                "echo \"Input #0, video4linux2,v4l2, from '/dev/video0':\" >&2; exec sleep 5",
            ],
            camera_id="camera0",
            role="snapshot",
            reader=True,
        )
        try:
            await _note(op, "camera_controls", device="camera0", reason="capture_started")
            assert again.value_of(abi.CID_FOCUS_ABSOLUTE) == 60
        finally:
            await daemon.app.supervisor.stop(snapshot, FAST_STOP)
        assert "gain" not in daemon.app.tuning.controls.desired(daemon.app.cameras.get("camera0"))  # type: ignore[arg-type]


async def test_capture_settings_validated_against_capabilities(
    tmp_path: Path, rig: FakeCameraRig
) -> None:
    overrides = {
        "cameras": {
            "devices": {"camera0": {"resolution": "1920x1080", "fps": 30}},
            "sources": [
                {"id": "pattern", "input": "testsrc2=size=320x240:rate=5", "input_format": "lavfi"}
            ],
        },
        "ffmpeg": {"video_encoder": "auto"},  # probed at start, as by default
    }
    rig.plug(0)
    async with (
        _daemon(tmp_path, rig, overrides) as daemon,
        daemon.client("operator") as op,
        daemon.client("viewer") as viewer,
    ):
        await _connected(op, "camera0")
        settings = await viewer.call("get_camera_settings", {"device": "camera0"})
        assert settings["pixel_format"] == "auto"
        assert (settings["active_pixel_format"], settings["resolution"], settings["fps"]) == (
            "H264",
            "1920x1080",
            30,
        )
        assert settings["encoder"] == "copy"
        caps = await viewer.call("get_camera_capabilities", {"device": "camera0"})
        assert caps["modes"]["YUYV"]["2304x1536"] == [2]
        assert caps["modes"]["H264"]["1920x1080"][0] == 30
        assert settings["selection"].startswith("auto: compressed H264")

        with pytest.raises(RpcCallError) as bad:
            await op.call("set_camera_settings", {"device": "camera0", "pixel_format": "H265"})
        assert bad.value.code == -32602 and bad.value.data["param"] == "pixel_format"
        assert bad.value.data["hint"] == "allowed: auto, YUYV, MJPG, H264"
        with pytest.raises(RpcCallError) as bad:
            await op.call(
                "set_camera_settings", {"device": "camera0", "pixel_format": "YUYV", "fps": 30}
            )
        assert bad.value.data["param"] == "fps" and bad.value.data["hint"] == "allowed: 5"
        assert bad.value.data["allowed"] == [5]
        with pytest.raises(RpcCallError) as denied:
            await viewer.call("set_camera_settings", {"device": "camera0", "fps": 5})
        assert denied.value.code == -32002
        unchanged = await viewer.call("get_camera_settings", {"device": "camera0"})
        assert unchanged["active_pixel_format"] == "H264"  # bad input changed nothing

        stored = await op.call(
            "set_camera_settings", {"device": "camera0", "pixel_format": "YUYV", "fps": 5}
        )
        assert (stored["pixel_format"], stored["resolution"], stored["fps"]) == (
            "YUYV",
            "1920x1080",
            5,
        )
        assert stored["encoder"] == "libx264"
        note = await _note(viewer, "camera_status_update", device="camera0")
        assert (note["resolution"], note["fps"]) == ("1920x1080", 5)
        source = daemon.app.cameras.get("camera0")
        assert source is not None and source.pixel_format == "YUYV"

        # stored per physical camera: a replug keeps them
        rig.unplug(0)
        await _note(op, "camera_status_update", device="camera0", status="DISCONNECTED")
        rig.plug(2)
        await _note(op, "camera_status_update", device="camera0", status="CONNECTED")
        again = await viewer.call("get_camera_settings", {"device": "camera0"})
        assert (again["pixel_format"], again["fps"]) == ("YUYV", 5)

        for method in ("get_camera_controls", "get_camera_settings"):
            with pytest.raises(RpcCallError) as unsupported:
                await viewer.call(method, {"device": "pattern"})
            assert unsupported.value.code == -32030
            assert unsupported.value.data["feature"] == "camera-controls"
        with pytest.raises(RpcCallError) as missing:
            await viewer.call("get_camera_settings", {"device": "camera9"})
        assert missing.value.code == -32010

        await asyncio.wait_for(daemon.app.tuning.probed.wait(), 30)
        info = await viewer.call("get_server_info")
        assert "video-encoder:libx264" in info["capabilities"]
        assert "h264-encoder:libx264" in info["capabilities"]
        assert "camera-controls" in info["capabilities"]


async def test_reapplied_when_mediamtx_publisher_starts_streaming(
    tmp_path: Path, rig: FakeCameraRig
) -> None:
    """MediaMTX's own publisher FFmpeg (on demand, or start_streaming) opens the camera: once
    the daemon sees the path become ready it writes the controls again."""
    device = rig.plug(0)
    async with FakeMediaMTX() as fake:
        overrides = {
            "mediamtx": {
                "enabled": True,
                "api_url": fake.url,
                "rtsp_port": fake.rtsp_port,
                "health_interval": 0.2,
                "backoff_base": 0.05,
                "backoff_max": 0.2,
            }
        }
        async with _daemon(tmp_path, rig, overrides) as daemon, daemon.client("operator") as op:
            await _connected(op, "camera0")
            await fake.wait_until(lambda: "camera0" in fake.config_paths)
            conf = fake.config_paths["camera0"]
            assert "-input_format h264" in conf["runOnDemand"]
            assert "-c:v copy" in conf["runOnDemand"] and "libx264" not in conf["runOnDemand"]
            await op.call(
                "set_camera_controls",
                {
                    "device": "camera0",
                    "controls": {"focus_automatic_continuous": False, "focus_absolute": 200},
                },
            )
            device.stream_on()  # a reader asked MediaMTX; its publisher opened the camera
            assert device.value_of(abi.CID_FOCUS_ABSOLUTE) == 0
            fake.set_path_state("camera0", ready=True, readers=1)
            note = await _note(op, "camera_controls", device="camera0", reason="capture_started")
            assert note["controls"]["focus_absolute"] == 200
            assert device.value_of(abi.CID_FOCUS_ABSOLUTE) == 200
            # still ready at the next refresh: no second re-apply
            count = daemon.app.tuning.controls.reapplied["camera0"]
            await daemon.app.mediamtx.refresh_paths()
            assert daemon.app.tuning.controls.reapplied["camera0"] == count
