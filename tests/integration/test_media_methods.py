"""Snapshots, recordings, files and downloads through the API with real FFmpeg (ffprobe-checked)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from camera_service.client import RpcCallError
from camera_service.storage.usage import DiskUsage
from tests.support.daemon import RunningDaemon, running_daemon
from tests.support.media import ffprobe

SOURCE = {
    "id": "lab0",
    "name": "Lab",
    "input_format": "lavfi",
    "input": "testsrc2=size=320x240:rate=15",
    "exclusive": True,
}


@pytest.fixture
async def media(tmp_path: Path) -> AsyncIterator[RunningDaemon]:
    async with running_daemon(tmp_path, {"cameras": {"sources": [SOURCE]}}) as daemon:
        yield daemon


async def wait_recording_status(client: Any, status: str) -> dict[str, Any]:
    while True:
        note = await client.next_notification(timeout=15)
        if note["method"] == "recording_status_update" and note["params"]["status"] == status:
            return note["params"]


async def test_snapshot_is_decodable_at_configured_size(media: RunningDaemon) -> None:
    async with media.client("operator") as client:
        await client.call("subscribe_events", {"topics": ["snapshot.taken"]})
        shot = await client.call("take_snapshot", {"device": "lab0"})
        note = await client.next_notification()
        png = await client.call(
            "take_snapshot", {"device": "lab0", "filename": "door", "format": "png"}
        )
    assert shot["status"] == "SUCCESS" and shot["filename"].startswith("lab0_")
    assert note["method"] == "snapshot_taken" and note["params"]["filename"] == shot["filename"]
    path = media.app.config.storage.snapshots_dir / shot["filename"]
    stream = ffprobe(path)["streams"][0]
    assert (stream["width"], stream["height"]) == (320, 240)
    assert png["filename"] == "door.png"
    assert (
        ffprobe(media.app.config.storage.snapshots_dir / "door.png")["streams"][0]["codec_name"]
        == "png"
    )
    async with media.client("viewer") as viewer:
        info = await viewer.call("get_snapshot_info", {"filename": "door.png"})
        assert info["resolution"] == "320x240" and info["device"] == "lab0"
        listing = await viewer.call("list_snapshots", {"device": "lab0"})
        assert listing["total"] == 2


async def test_timed_recording_stops_itself_and_is_3s(media: RunningDaemon) -> None:
    async with media.client("operator") as client:
        started = await client.call("start_recording", {"device": "lab0", "duration": 3})
        assert started["status"] == "RECORDING" and started["format"] == "fmp4"
        assert (await wait_recording_status(client, "STARTED"))["filename"] == started["filename"]
        with pytest.raises(RpcCallError) as busy:
            await client.call("start_recording", {"device": "lab0"})
        assert busy.value.code == -32020
        stopped = await wait_recording_status(client, "STOPPED")
        assert stopped["reason"] == "duration_reached"
        with pytest.raises(RpcCallError) as idle:
            await client.call("stop_recording", {"device": "lab0"})
        assert idle.value.code == -32020
        info = await client.call("get_recording_info", {"filename": started["filename"]})
    assert 2.5 <= info["duration"] <= 3.6
    assert info["format"] == "fmp4"
    probed = ffprobe(media.app.config.storage.recordings_dir / started["filename"])
    assert probed["streams"][0]["codec_name"] == "h264"


async def test_snapshot_while_recording_exclusive_source_opens_device_once(
    media: RunningDaemon,
) -> None:
    async with media.client("operator") as client:
        await client.call("start_recording", {"device": "lab0", "format": "mkv"})
        shot = await client.call("take_snapshot", {"device": "lab0"})
        stopped = await client.call("stop_recording", {"device": "lab0"})
    assert shot["file_size"] > 1000
    assert stopped["status"] == "STOPPED" and stopped["file_size"] > 0
    assert media.app.supervisor.peak_readers("lab0") == 1
    assert ffprobe(media.app.config.storage.recordings_dir / stopped["filename"])["format"][
        "format_name"
    ].startswith("matroska")


async def test_recording_survives_client_disconnect(media: RunningDaemon) -> None:
    async with media.client("operator") as client:
        started = await client.call("start_recording", {"device": "lab0"})
    assert media.app.recordings.active("lab0") is not None
    async with media.client("operator") as client:
        stopped = await client.call("stop_recording", {"device": "lab0"})
    assert stopped["filename"] == started["filename"] and stopped["duration"] > 0


async def test_delete_refuses_active_recording_and_needs_admin(media: RunningDaemon) -> None:
    async with media.client("operator") as operator, media.client("admin") as admin:
        started = await operator.call("start_recording", {"device": "lab0"})
        with pytest.raises(RpcCallError) as denied:
            await operator.call("delete_recording", {"filename": started["filename"]})
        assert denied.value.code == -32002
        with pytest.raises(RpcCallError) as busy:
            await admin.call("delete_recording", {"filename": started["filename"]})
        assert busy.value.code == -32020
        await operator.call("stop_recording", {"device": "lab0"})
        deleted = await admin.call("delete_recording", {"filename": started["filename"]})
        assert deleted["deleted"] is True
        with pytest.raises(RpcCallError) as gone:
            await admin.call("get_recording_info", {"filename": started["filename"]})
        assert gone.value.code == -32010


TRAVERSAL = ["../x", "/etc/passwd", "a\x00b", "..%2Fx", "%2e%2e", "a/b", ".hidden", "x" * 200]


@pytest.mark.parametrize("name", TRAVERSAL)
async def test_traversal_names_refused_on_every_method(media: RunningDaemon, name: str) -> None:
    outside = media.app.config.storage.state_dir / "api_keys.json"
    assert outside.exists()
    async with media.client("admin") as client:
        for method, params in [
            ("get_recording_info", {"filename": name}),
            ("get_snapshot_info", {"filename": name}),
            ("delete_recording", {"filename": name}),
            ("delete_snapshot", {"filename": name}),
            ("take_snapshot", {"device": "lab0", "filename": name}),
        ]:
            with pytest.raises(RpcCallError) as info:
                await client.call(method, params)
            assert info.value.code in (-32602, -32010), (method, name)
    assert outside.exists()


async def download(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, Any]:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as response:
        return response.status, await response.read(), response.headers


async def test_downloads_token_headers_range_and_refusals(
    media: RunningDaemon, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="http.access")
    async with media.client("operator") as client:
        shot = await client.call("take_snapshot", {"device": "lab0"})
        other = await client.call("take_snapshot", {"device": "lab0", "filename": "other"})
    url = shot["download_url"]
    assert urlsplit(url).port == media.app.http.port
    status, body, headers = await download(url)
    path = media.app.config.storage.snapshots_dir / shot["filename"]
    assert status == 200 and body == path.read_bytes()
    assert headers["Content-Type"] == "image/jpeg"
    assert f'filename="{shot["filename"]}"' in headers["Content-Disposition"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    bare = url.split("?")[0]
    assert (await download(bare))[0] == 401
    assert (await download(bare, {"Authorization": f"Bearer {media.keys['viewer']}"}))[0] == 200
    assert (await download(bare, {"X-API-Key": media.keys["viewer"]}))[0] == 200
    assert (await download(bare, {"X-API-Key": "csk_nope_nope"}))[0] == 401
    status, part, headers = await download(
        bare, {"X-API-Key": media.keys["viewer"], "Range": "bytes=0-99"}
    )
    assert status == 206 and part == path.read_bytes()[:100]
    other_token = other["download_url"].split("?token=")[1]
    assert (await download(f"{bare}?token={other_token}"))[0] == 403
    expired = "1000." + "A" * 43
    assert (await download(f"{bare}?token={expired}"))[0] in (401, 403)
    base = media.http_url + "/files/snapshots/"
    for evil in ["..%2Fstate%2Fapi_keys.json", "%2e%2e%2fstate%2fapi_keys.json", "..", "x%00y"]:
        status, body, _ = await download(base + evil, {"X-API-Key": media.keys["admin"]})
        assert status in (400, 404) and b"csk_" not in body and b"hash" not in body
    assert (
        await download(
            media.http_url + "/files/state/api_keys.json", {"X-API-Key": media.keys["admin"]}
        )
    )[0] == 404
    access = [r.getMessage() for r in caplog.records if r.name == "http.access"]
    token = url.split("?token=")[1]
    assert any("token=[REDACTED]" in line for line in access)
    assert not any(token in line for line in access)


async def test_expired_download_token_is_401(media: RunningDaemon) -> None:
    from camera_service.storage.tokens import make_download_token

    async with media.client("operator") as client:
        shot = await client.call("take_snapshot", {"device": "lab0"})
    token = make_download_token(
        media.app.links.secret, "snapshots", shot["filename"], ttl_s=600, now=0
    )
    bare = shot["download_url"].split("?")[0]
    assert (await download(f"{bare}?token={token}"))[0] == 401


async def test_storage_block_threshold_refuses_new_work(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, {"cameras": {"sources": [SOURCE]}}) as daemon:
        daemon.app.media_deps.disk_usage = lambda path: DiskUsage(total=1000, used=990, free=10)
        async with daemon.client("operator") as client:
            for method in ("take_snapshot", "start_recording"):
                with pytest.raises(RpcCallError) as info:
                    await client.call(method, {"device": "lab0"})
                assert info.value.code == -32060
                assert info.value.data == {"available_bytes": 10, "threshold_bytes": 50}
        assert not list(daemon.app.config.storage.snapshots_dir.iterdir())


async def test_storage_critical_stops_running_recording(media: RunningDaemon) -> None:
    async with media.client("operator") as client:
        await client.call("start_recording", {"device": "lab0"})
        media.app.storage_guard.disk_usage = lambda path: DiskUsage(1000, 999, 1)
        assert await media.app.storage_guard.check_once()
        stopped = await wait_recording_status(client, "STOPPED")
    assert stopped["reason"] == "storage_critical"
    assert media.app.recordings.active("lab0") is None


async def test_retention_policy_persists_and_cleanup_runs(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as daemon, daemon.client("admin") as client:
        with pytest.raises(RpcCallError) as info:
            await client.call("set_retention_policy", {"policy_type": "age", "enabled": True})
        assert info.value.code == -32602
        stored = await client.call(
            "set_retention_policy", {"policy_type": "age", "max_age_days": 1, "enabled": True}
        )
        assert stored["max_age_days"] == 1
        old = daemon.app.config.storage.recordings_dir / "camera0_2020-01-01_00-00-00.mp4"
        old.write_bytes(b"x" * 1000)
        import os

        os.utime(old, (1_600_000_000, 1_600_000_000))
        result = await client.call("cleanup_old_files")
        assert result["cleanup_executed"] and result["files_deleted"] == 1
        assert result["space_freed"] == 1000 and not old.exists()
        info_result = await client.call("get_storage_info")
        assert info_result["total_space"] > 0 and "critical" in info_result
    async with running_daemon(tmp_path) as daemon:
        assert daemon.app.policies.policy.policy_type == "age"


async def test_shutdown_finalizes_an_active_recording(tmp_path: Path) -> None:
    overrides = {"cameras": {"sources": [SOURCE]}}
    async with running_daemon(tmp_path, overrides) as daemon, daemon.client("operator") as client:
        started = await client.call("start_recording", {"device": "lab0", "format": "mp4"})
    path = tmp_path / "recordings" / started["filename"]
    probed = ffprobe(path)
    assert float(probed["format"]["duration"]) > 0
    assert daemon.app.supervisor.all() == []


async def test_get_metrics_reports_recordings(media: RunningDaemon) -> None:
    async with media.client("admin") as client:
        await client.call("start_recording", {"device": "lab0"})
        metrics = await client.call("get_metrics")
        await client.call("stop_recording", {"device": "lab0"})
    assert metrics["recording_metrics"]["active"] == 1
    assert metrics["camera_metrics"]["cameras"]["lab0"]["status"] == "CONNECTED"


async def test_camera_gone_mid_recording_is_error_camera_disconnected(media: RunningDaemon) -> None:
    from dataclasses import replace

    from camera_service.cameras.model import CameraStatus

    async with media.client("operator") as client:
        started = await client.call("start_recording", {"device": "lab0"})
        camera = media.app.cameras.get("lab0")
        assert camera is not None
        # What the registry tells its listeners when a camera disappears.
        media.app._camera_changed(
            replace(camera, status=CameraStatus.DISCONNECTED), "camera.disconnected"
        )
        ended = await wait_recording_status(client, "ERROR")
    assert ended["reason"] == "camera_disconnected"
    assert ended["filename"] == started["filename"]
    probed = ffprobe(media.app.config.storage.recordings_dir / started["filename"])
    assert float(probed["format"]["duration"]) > 0
