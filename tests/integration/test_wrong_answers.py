"""Wrong answers fixed (issue 10): races with deletion and removal, links built from an
untrusted Host header, HTTP download authentication failures."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import websockets

from camera_service.client import RpcCallError
from camera_service.storage import listing as storage_listing
from camera_service.storage.usage import DiskUsage
from tests.support.daemon import RunningDaemon, running_daemon

pytestmark = pytest.mark.timeout(60)

SOURCE = {
    "id": "lab0",
    "name": "Lab",
    "input_format": "lavfi",
    "input": "testsrc2=size=160x120:rate=10",
    "exclusive": True,
}
STREAM = "rtsp://192.0.2.10:554/live"


@pytest.fixture
async def media(tmp_path: Path) -> AsyncIterator[RunningDaemon]:
    async with running_daemon(tmp_path, {"cameras": {"sources": [SOURCE]}}) as daemon:
        yield daemon


# --- item 8: races -----------------------------------------------------------------------


async def test_listing_skips_a_file_deleted_while_the_directory_is_read(
    daemon: RunningDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshots = daemon.app.config.storage.snapshots_dir
    for n in range(3):
        (snapshots / f"cam_{n}.jpg").write_bytes(b"\xff\xd8\xff")
    real_scan = storage_listing._scan_dir

    def scan_then_vanish(directory: Path) -> Iterator[tuple[str, Any]]:
        # delete_snapshot finishing between readdir and the stat of one entry
        for name, entry in real_scan(directory):
            if name == "cam_1.jpg":
                Path(entry.path).unlink()
            yield name, entry

    monkeypatch.setattr(storage_listing, "_scan_dir", scan_then_vanish)
    async with daemon.client("viewer") as client:
        listing = await client.call("list_snapshots")
    assert sorted(f["filename"] for f in listing["files"]) == ["cam_0.jpg", "cam_2.jpg"]
    assert listing["total"] == 2


@pytest.mark.parametrize("method", ["take_snapshot", "start_recording"])
async def test_camera_removed_during_the_call_is_32010(daemon: RunningDaemon, method: str) -> None:
    entered, release = threading.Event(), threading.Event()
    deps = daemon.app.media_deps
    measure = deps.disk_usage

    def held(path: Path) -> DiskUsage:
        # the call is past its camera check and waiting on the disk: remove the camera now
        entered.set()
        release.wait(10)
        return measure(path)

    deps.disk_usage = held
    async with daemon.client("operator") as caller, daemon.client("operator") as remover:
        await caller.call("add_external_stream", {"stream_url": STREAM, "stream_name": "gate"})
        pending = asyncio.create_task(caller.call(method, {"device": "gate"}))
        assert await asyncio.to_thread(entered.wait, 10)
        await remover.call("remove_external_stream", {"stream_url": STREAM})
        release.set()
        with pytest.raises(RpcCallError) as info:
            await pending
    assert info.value.code == -32010, info.value


# --- item 10: links and the Host header --------------------------------------------------


async def test_links_never_come_from_the_host_header(media: RunningDaemon) -> None:
    http_port = media.app.http.port
    async with media.client("viewer") as viewer:
        await viewer.call("subscribe_events", {"topics": ["snapshot.taken"]})
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(media.ws_url, headers={"Host": "attacker.example"}) as ws,
        ):
            key = media.keys["operator"]
            await ws.send_str(json.dumps(_req("authenticate", {"auth_token": key}, 1)))
            assert "result" in json.loads(await ws.receive_str(timeout=10))
            await ws.send_str(json.dumps(_req("take_snapshot", {"device": "lab0"}, 2)))
            answer = json.loads(await ws.receive_str(timeout=20))
        note = await viewer.next_notification(timeout=20)
    assert note["method"] == "snapshot_taken"
    for url in (answer["result"]["download_url"], note["params"]["download_url"]):
        parts = urlsplit(url)
        assert (parts.hostname, parts.port) == ("127.0.0.1", http_port), url


async def test_public_url_wins_for_every_recipient(tmp_path: Path) -> None:
    overrides = {
        "cameras": {"sources": [SOURCE]},
        "http": {"public_url": "https://cams.example.org/base"},
    }
    async with running_daemon(tmp_path, overrides) as daemon, daemon.client("operator") as op:
        await op.call("subscribe_events", {"topics": ["snapshot.taken"]})
        shot = await op.call("take_snapshot", {"device": "lab0"})
        note = await op.next_notification(timeout=20)
    for url in (shot["download_url"], note["params"]["download_url"]):
        assert url.startswith("https://cams.example.org/base/files/snapshots/"), url


async def test_two_host_headers_do_not_break_the_connection(daemon: RunningDaemon) -> None:
    headers = [("Host", "a.example"), ("Host", "b.example")]
    async with websockets.connect(daemon.ws_url, additional_headers=headers) as ws:
        await ws.send(json.dumps(_req("ping", None, 1)))
        assert json.loads(await ws.recv())["result"] == "pong"


def _req(method: str, params: dict[str, Any] | None, request_id: int) -> dict[str, Any]:
    body: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": request_id}
    if params is not None:
        body["params"] = params
    return body


# --- item 12: HTTP download authentication ------------------------------------------------


async def test_download_auth_failures_share_the_limit_and_are_audited(
    daemon: RunningDaemon, caplog: pytest.LogCaptureFixture
) -> None:
    (daemon.app.config.storage.snapshots_dir / "cam_1.jpg").write_bytes(b"\xff\xd8\xff")
    url = f"{daemon.http_url}/files/snapshots/cam_1.jpg"
    limit = daemon.app.config.auth.failed_auth_limit
    with caplog.at_level(logging.INFO, logger="camera_service.audit"):
        async with aiohttp.ClientSession() as http:
            for n in range(limit):
                async with http.get(url, headers={"X-API-Key": f"csk_bad_{n}"}) as response:
                    assert response.status == 401
            good = {"X-API-Key": daemon.keys["admin"]}
            async with http.get(url, headers=good) as response:
                assert response.status == 429
                assert int(response.headers["Retry-After"]) >= 1
    failures = [r for r in caplog.records if r.getMessage() == "authentication failed"]
    assert len(failures) == limit
    assert all(getattr(r, "remote", None) == "127.0.0.1" for r in failures)
    async with daemon.client() as client:  # the WebSocket side sees the same limit
        with pytest.raises(RpcCallError) as info:
            await client.authenticate(daemon.keys["admin"])
    assert info.value.code == -32040


async def test_forged_download_tokens_count_as_failures(daemon: RunningDaemon) -> None:
    (daemon.app.config.storage.snapshots_dir / "cam_1.jpg").write_bytes(b"\xff\xd8\xff")
    url = f"{daemon.http_url}/files/snapshots/cam_1.jpg"
    async with aiohttp.ClientSession() as http:
        statuses = []
        for n in range(daemon.app.config.auth.failed_auth_limit + 1):
            async with http.get(url, params={"token": f"9999999999.{n:064x}"}) as response:
                statuses.append(response.status)
    assert statuses[:-1] == [403] * (len(statuses) - 1)
    assert statuses[-1] == 429


# --- item 11: credentials in external stream URLs -----------------------------------------


async def test_viewers_never_see_stream_credentials(daemon: RunningDaemon) -> None:
    urls = {
        "userinfo": "rtsp://admin:pw1secret@192.0.2.20/live",
        "query": "rtsp://192.0.2.21/cam?user=admin&pwd=pw2secret",
        "password": "http://192.0.2.22/video.cgi?password=pw3secret&res=hd",
        "matrix": "rtsp://192.0.2.23/s1;user=admin;password=pw4secret",
        "token": "https://192.0.2.24/x?access_token=pw5secret",
    }
    async with daemon.client("operator") as operator:
        for name, url in urls.items():
            await operator.call("add_external_stream", {"stream_url": url, "stream_name": name})
    async with daemon.client("viewer") as viewer:
        streams = await viewer.call("get_external_streams")
        cameras = await viewer.call("get_camera_list")
    text = json.dumps([streams, cameras])
    assert "secret" not in text
    shown = {s["stream_name"]: s["stream_url"] for s in streams["external_streams"]}
    assert shown["query"] == "rtsp://192.0.2.21/cam?user=admin&pwd=***"
    assert shown["matrix"] == "rtsp://192.0.2.23/s1;user=admin;password=***"


async def test_a_disconnect_stop_finding_the_recording_gone_logs_no_traceback(
    media: RunningDaemon, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by bench/fuzz.py: remove_external_stream while that camera's recording was
    starting. The disconnect handler saw it active and queued a stop; the start failed
    meanwhile, and the stop logged `could not stop recording` with a NotRecording traceback.
    Here the recording ends between the check and the queued stop."""
    app = media.app
    async with media.client("operator") as client:
        await client.call("start_recording", {"device": "lab0"})
        assert app.recordings.active("lab0") is not None  # what the handler checks
        await client.call("stop_recording", {"device": "lab0"})  # ended meanwhile
    with caplog.at_level(logging.DEBUG):
        await app._stop_recording("lab0", "camera_disconnected")  # the queued stop
    assert not [r for r in caplog.records if r.exc_info], "no traceback"
