"""Failing storage (issue 10, item 13), on real file systems: a tmpfs filled to the last byte
and a read-only bind mount. Full disk → -32060, read-only → -32050 ``storage``; state files
keep their old content; health says DEGRADED/UNHEALTHY with the reason."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from camera_service.app import Application, StartupError
from camera_service.client import CameraClient, RpcCallError
from tests.support.daemon import make_config, running_daemon
from tests.support.mounts import fill, read_only, tmpfs

SOURCE = {
    "id": "lab0",
    "input_format": "lavfi",
    "input": "testsrc2=size=320x240:rate=15",
    "exclusive": True,
}
STREAM = {"stream_url": "rtsp://192.0.2.7/live", "stream_name": "gate"}


async def rpc_error(client: CameraClient, method: str, params: Any = None) -> RpcCallError:
    with pytest.raises(RpcCallError) as info:
        await client.call(method, params)
    return info.value


def storage_overrides(root: Path) -> dict[str, Any]:
    return {
        "storage": {
            "recordings_dir": str(root / "recordings"),
            "snapshots_dir": str(root / "snapshots"),
            "state_dir": str(root / "state"),
        },
        "cameras": {"sources": [SOURCE]},
    }


def temporaries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


async def test_full_state_disk_answers_32060_and_keeps_the_old_files(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "data", "1m") as root:
        async with (
            running_daemon(tmp_path, storage_overrides(root)) as daemon,
            daemon.client("admin") as client,
        ):
            await client.call("set_retention_policy", {"policy_type": "age", "max_age_days": 5})
            await client.call("add_external_stream", STREAM)
            state = root / "state"
            policy_before = (state / "retention.json").read_bytes()
            streams_before = (state / "external_streams.json").read_bytes()
            filler = fill(root)

            error = await rpc_error(
                client, "set_retention_policy", {"policy_type": "size", "max_size_gb": 1}
            )
            assert error.code == -32060, error
            assert error.data["available_bytes"] == 0
            assert error.data["threshold_bytes"] > 0
            error = await rpc_error(
                client,
                "add_external_stream",
                {"stream_url": "rtsp://192.0.2.8/x", "stream_name": "yard"},
            )
            assert error.code == -32060, error
            # Never half-written: old content, no temporary left, memory unchanged.
            assert (state / "retention.json").read_bytes() == policy_before
            assert (state / "external_streams.json").read_bytes() == streams_before
            assert temporaries(state) == []
            assert (await client.call("get_retention_policy"))["policy_type"] == "age"
            listed = await client.call("get_external_streams")
            assert [s["stream_name"] for s in listed["external_streams"]] == ["gate"]
            error = await rpc_error(client, "take_snapshot", {"device": "lab0"})
            assert error.code == -32060
            status = await client.status()
            assert status["status"] == "DEGRADED"
            assert status["components"]["storage"] == "RUNNING"
            storage = status["component_details"]["storage"]
            assert storage["status"] == "degraded" and "full" in storage["details"]["reason"]

            filler.unlink()  # space again: the same calls succeed
            await client.call("set_retention_policy", {"policy_type": "size", "max_size_gb": 1})
            policy = json.loads((state / "retention.json").read_text())
            assert policy["policy_type"] == "size"


async def test_read_only_storage_answers_32050_storage_for_every_write(tmp_path: Path) -> None:
    root = tmp_path / "data"
    async with (
        running_daemon(tmp_path, storage_overrides(root)) as daemon,
        daemon.client("admin") as client,
    ):
        await client.call("add_external_stream", STREAM)
        await client.call("set_retention_policy", {"policy_type": "age", "max_age_days": 1})
        (root / "recordings" / "old.mp4").write_bytes(b"\0" * 100)
        (root / "snapshots" / "old.jpg").write_bytes(b"\0" * 100)
        for name in ("old.mp4", "old.jpg"):  # older than the policy's day
            path = root / ("recordings" if name.endswith("mp4") else "snapshots") / name
            os.utime(path, (1_000_000, 1_000_000))
        with read_only(root):
            calls: list[tuple[str, dict[str, Any] | None]] = [
                ("take_snapshot", {"device": "lab0"}),
                ("start_recording", {"device": "lab0"}),
                ("set_retention_policy", {"policy_type": "manual"}),
                (
                    "add_external_stream",
                    {"stream_url": "rtsp://192.0.2.9/", "stream_name": "y"},
                ),
                ("remove_external_stream", {"stream_url": STREAM["stream_url"]}),
                ("delete_recording", {"filename": "old.mp4"}),
                ("delete_snapshot", {"filename": "old.jpg"}),
                ("cleanup_old_files", None),
            ]
            for method, params in calls:
                error = await rpc_error(client, method, params)
                assert error.code == -32050, (method, error)
                assert error.data["dependency"] == "storage", (method, error.data)
                assert "read-only" in error.data["detail"], (method, error.data)
                assert str(root) not in error.data["detail"], (method, error.data)
            # Nothing changed.
            assert (await client.call("get_external_streams"))["total_count"] == 1
            assert (await client.call("get_retention_policy"))["policy_type"] == "age"
            assert (await client.call("list_recordings"))["total"] == 1
            assert daemon.app.recordings.active_all() == []

            status = await client.status()
            assert status["status"] == "UNHEALTHY"
            assert status["components"]["storage"] == "ERROR"
            reason = status["component_details"]["storage"]["details"]["reason"]
            assert "read-only" in reason
            async with aiohttp.ClientSession() as http:
                async with http.get(daemon.http_url + "/health") as response:
                    assert response.status == 503
                    body = await response.json()
                assert body["status"] == "unhealthy"
                assert any("storage" in r and "read-only" in r for r in body["reasons"])
                async with http.get(daemon.http_url + "/health/storage") as response:
                    assert response.status == 503
        status = await client.status()
        assert status["components"]["storage"] == "RUNNING"


async def test_missing_ffmpeg_makes_health_unhealthy_with_the_reason(tmp_path: Path) -> None:
    overrides = {"ffmpeg": {"binary": str(tmp_path / "no-such-ffmpeg")}}
    async with running_daemon(tmp_path, overrides) as daemon, daemon.client("admin") as client:
        status = await client.status()
        assert status["status"] == "UNHEALTHY"
        assert status["components"]["ffmpeg"] == "ERROR"
        reason = status["component_details"]["ffmpeg"]["details"]["reason"]
        assert "no-such-ffmpeg" in reason and str(tmp_path) not in reason
        async with (
            aiohttp.ClientSession() as http,
            http.get(daemon.http_url + "/health") as response,
        ):
            assert response.status == 503
            assert "ffmpeg: " + reason in (await response.json())["reasons"]


async def test_missing_ffprobe_only_degrades(tmp_path: Path) -> None:
    overrides = {"ffmpeg": {"ffprobe": "no-such-ffprobe"}}
    async with running_daemon(tmp_path, overrides) as daemon, daemon.client("admin") as client:
        status = await client.status()
        assert status["status"] == "DEGRADED"
        assert status["components"]["ffmpeg"] == "RUNNING"
        assert status["component_details"]["ffmpeg"]["status"] == "degraded"


def test_read_only_state_directory_at_start_names_the_file(tmp_path: Path) -> None:
    """The first start cannot create its JWT secret: one clear line, no traceback."""
    config = make_config(tmp_path)
    config.storage.state_dir.mkdir(parents=True)
    with read_only(config.storage.state_dir), pytest.raises(StartupError) as info:
        Application(config)
    message = str(info.value)
    assert str(config.jwt_secret_file) in message and "Read-only file system" in message
