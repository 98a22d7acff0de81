"""GET /cameras/{device}/snapshot.jpg and /stream.mjpg with a real HTTP client and real FFmpeg."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import aiohttp
import pytest

from camera_service.auth.roles import Role
from camera_service.media.snapshots import is_complete_jpeg
from tests.support.daemon import RunningDaemon, running_daemon
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(60)

CAMERAS = {
    "cameras": {
        "sources": [
            {
                "id": "cam0",
                "input_format": "lavfi",
                "input": "testsrc2=size=320x240:rate=15",
                "exclusive": True,
            },
            {"id": "cam1", "input_format": "lavfi", "input": "testsrc=size=160x120:rate=10"},
        ]
    },
    "http": {"frame_keepalive": 2.0, "mjpeg_fps": 10, "mjpeg_max_viewers": 4},
}


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[RunningDaemon]:
    async with running_daemon(tmp_path, CAMERAS) as running:
        yield running


def jpeg_size(data: bytes) -> tuple[int, int]:
    """Width and height of a JPEG, from ffprobe reading it from stdin."""
    out = subprocess.run(
        [
            *("ffprobe", "-v", "error", "-f", "image2pipe", "-i", "pipe:0"),
            *("-show_entries", "stream=width,height", "-of", "csv=p=0"),
        ],
        input=data,
        capture_output=True,
        timeout=20,
        check=True,
    )
    width, height = out.stdout.decode().strip().split(",")[:2]
    return int(width), int(height)


async def read_parts(response: aiohttp.ClientResponse, count: int) -> list[bytes]:
    """The first ``count`` JPEG parts of a multipart/x-mixed-replace response."""
    reader = aiohttp.MultipartReader.from_response(response)
    frames: list[bytes] = []
    while len(frames) < count:
        part = await asyncio.wait_for(reader.next(), 10)
        assert part is not None, "stream ended early"
        assert isinstance(part, aiohttp.BodyPartReader)
        assert part.headers["Content-Type"] == "image/jpeg"
        frames.append(bytes(await part.read()))
    return frames


async def camera_urls(daemon: RunningDaemon, device: str, **extra: int) -> dict[str, str]:
    async with daemon.client("viewer") as client:
        result: dict[str, str] = await client.call("get_camera_urls", {"device": device, **extra})
    return result


async def test_snapshot_url_returns_a_current_jpeg_and_stores_nothing(
    daemon: RunningDaemon,
) -> None:
    headers = {"X-API-Key": daemon.keys["viewer"]}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{daemon.http_url}/cameras/cam0/snapshot.jpg", headers=headers) as r:
            assert r.status == 200, await r.text()
            assert r.headers["Content-Type"] == "image/jpeg"
            assert r.headers["Cache-Control"] == "no-store"
            cold = await r.read()
        # The second one comes from the reader the first one started.
        bearer = {"Authorization": f"Bearer {daemon.token(Role.VIEWER)}"}
        async with http.get(f"{daemon.http_url}/cameras/cam0/snapshot.jpg", headers=bearer) as r:
            assert r.status == 200
            warm = await r.read()
    for data in (cold, warm):
        assert is_complete_jpeg(data)
        assert jpeg_size(data) == (320, 240)
    snapshots = daemon.app.config.storage.snapshots_dir
    assert not snapshots.exists() or not any(snapshots.iterdir())
    readers = [h for h in daemon.app.supervisor.history("cam0") if h.reader]
    assert len(readers) == 1, readers  # one reader served both
    assert daemon.app.supervisor.peak_readers("cam0") == 1
    # Unused for http.frame_keepalive (2 s), the reader ends and frees the device.
    await wait_until(lambda: not daemon.app.frames.running("cam0"), 10, "reader stopped")
    assert daemon.app.supervisor.readers("cam0") == []


async def test_credentials_are_required_and_checked(daemon: RunningDaemon) -> None:
    url = f"{daemon.http_url}/cameras/cam0/snapshot.jpg"
    urls = await camera_urls(daemon, "cam0")
    other = await camera_urls(daemon, "cam1")
    token_cam1 = other["snapshot_url"].split("token=")[1]
    async with aiohttp.ClientSession() as http:
        cases = {
            "no credentials": (url, {}, 401),
            "bad key": (url, {"X-API-Key": "csk_nope"}, 401),
            "bad bearer": (url, {"Authorization": "Bearer nope"}, 401),
            "api key in query": (f"{url}?token={daemon.keys['admin']}", {}, 401),
            "token of another camera": (f"{url}?token={token_cam1}", {}, 401),
            "tampered token": (urls["snapshot_url"][:-3] + "AAA", {}, 401),
            "unknown camera": (
                f"{daemon.http_url}/cameras/nope/snapshot.jpg",
                {"X-API-Key": daemon.keys["viewer"]},
                404,
            ),
            "bad camera id": (
                f"{daemon.http_url}/cameras/..%2Fx/snapshot.jpg",
                {"X-API-Key": daemon.keys["viewer"]},
                400,
            ),
        }
        for name, (target, headers, status) in cases.items():
            async with http.get(target, headers=headers) as r:
                assert r.status == status, (name, r.status, await r.text())
        # The signed URL works with no other credential (what Home Assistant is given).
        async with http.get(urls["snapshot_url"]) as r:
            assert r.status == 200
            assert is_complete_jpeg(await r.read())
        jwt = daemon.token(Role.VIEWER)
        async with http.get(f"{url}?token={jwt}") as r:
            assert r.status == 200
    assert urls["mjpeg_url"].startswith(f"{daemon.http_url}/cameras/cam0/stream.mjpg?token=c1.")


async def test_many_viewers_share_one_reader_and_get_changing_frames(
    daemon: RunningDaemon,
) -> None:
    urls = await camera_urls(daemon, "cam0")
    async with aiohttp.ClientSession() as http:

        async def watch() -> list[bytes]:
            async with http.get(urls["mjpeg_url"]) as r:
                assert r.status == 200
                assert r.headers["Content-Type"].startswith("multipart/x-mixed-replace")
                return await read_parts(r, 6)

        results = await asyncio.gather(*(watch() for _ in range(4)))
        await wait_until(lambda: daemon.app.frames.viewers("cam0") == 0, what="viewers gone")
        # A fifth viewer over mjpeg_max_viewers (4) is refused while four watch.
        async with contextlib.AsyncExitStack() as stack:
            four = [await stack.enter_async_context(http.get(urls["mjpeg_url"])) for _ in range(4)]
            await asyncio.gather(*(read_parts(r, 1) for r in four))
            async with http.get(urls["mjpeg_url"]) as fifth:
                assert fifth.status == 503
                assert "viewers" in await fifth.text()
    for frames in results:
        assert all(is_complete_jpeg(f) for f in frames)
        assert len(set(frames)) >= 3, "frames do not change"
    readers = [h for h in daemon.app.supervisor.history("cam0") if h.reader]
    assert len(readers) == 1
    assert daemon.app.supervisor.peak_readers("cam0") == 1


async def test_a_stalled_viewer_does_not_hold_back_the_others(daemon: RunningDaemon) -> None:
    urls = await camera_urls(daemon, "cam0")
    path = urls["mjpeg_url"].split(str(daemon.app.http.port), 1)[1]
    stalled = socket.create_connection(("127.0.0.1", daemon.app.http.port))
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    try:
        async with aiohttp.ClientSession() as http, http.get(urls["mjpeg_url"]) as r:
            frames = await read_parts(r, 40)  # ~4 s of frames while the other reads nothing
        assert len(set(frames)) >= 30
        assert daemon.app.frames.viewers("cam0") >= 1  # the stalled one is still attached
    finally:
        stalled.close()


async def test_recording_takes_the_device_and_the_stream_goes_on(daemon: RunningDaemon) -> None:
    urls = await camera_urls(daemon, "cam0")
    async with aiohttp.ClientSession() as http, http.get(urls["mjpeg_url"]) as r:
        reader = aiohttp.MultipartReader.from_response(r)

        async def frames(count: int) -> list[bytes]:
            out = []
            for _ in range(count):
                part = await asyncio.wait_for(reader.next(), 10)
                assert isinstance(part, aiohttp.BodyPartReader)
                out.append(bytes(await part.read()))
            return out

        await frames(3)
        async with daemon.client("operator") as client:
            started = await client.call("start_recording", {"device": "cam0"})
            assert started["status"] == "RECORDING"
            during = await frames(3)  # from the recording's own frames now
            stopped = await client.call("stop_recording", {"device": "cam0"})
            assert stopped["file_size"] > 0
        after = await frames(5)
    assert all(is_complete_jpeg(f) for f in during + after)
    assert daemon.app.supervisor.peak_readers("cam0") == 1
    roles = [h.role for h in daemon.app.supervisor.history("cam0") if h.reader]
    assert roles[:2] == ["frames", "recording"]
    assert roles[2:] == ["frames"]


async def test_snapshot_of_a_disconnected_camera_is_refused(tmp_path: Path) -> None:
    overrides = {
        "cameras": {"sources": [{"id": "bad0", "input_format": "lavfi", "input": "nosuchsrc"}]},
        "http": {"frame_keepalive": 1.0},
        "ffmpeg": {"snapshot_timeout": 3.0},
    }
    async with running_daemon(tmp_path, overrides) as daemon, aiohttp.ClientSession() as http:
        headers = {"X-API-Key": daemon.keys["viewer"]}
        async with http.get(f"{daemon.http_url}/cameras/bad0/snapshot.jpg", headers=headers) as r:
            assert r.status == 503
            assert "frame" in (await r.text()).lower()


async def test_take_snapshot_during_mjpeg_copies_the_live_frame(daemon: RunningDaemon) -> None:
    urls = await camera_urls(daemon, "cam0")
    async with aiohttp.ClientSession() as http, http.get(urls["mjpeg_url"]) as r:
        await read_parts(r, 2)
        async with daemon.client("operator") as rpc:
            shot = await rpc.call("take_snapshot", {"device": "cam0"})
            png = await rpc.call("take_snapshot", {"device": "cam0", "format": "png"})
        await read_parts(r, 2)  # the stream went on
    snapshots = daemon.app.config.storage.snapshots_dir
    assert is_complete_jpeg((snapshots / shot["filename"]).read_bytes())
    assert (snapshots / png["filename"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    readers = [h for h in daemon.app.supervisor.history("cam0") if h.reader]
    assert [h.role for h in readers] == ["frames"]  # no second open of the device


async def test_a_reader_with_a_full_pipe_still_stops(tmp_path: Path) -> None:
    """Big frames fill the stdout pipe as soon as nobody reads it; stopping must drain it
    (asyncio reports the exit only once the pipe closes)."""
    from camera_service.media.ffmpeg import ProcessSupervisor
    from camera_service.media.frames import FrameHub
    from camera_service.media.recordings import RecordingManager
    from camera_service.media.source import CaptureSource
    from tests.support.media import FAST_STOP

    source = CaptureSource("big0", "testsrc2=size=1920x1080:rate=60", "lavfi", exclusive=True)

    async def resolve(camera_id: str) -> tuple[CaptureSource, bool]:
        return source, True

    supervisor = ProcessSupervisor(FAST_STOP)
    recordings = RecordingManager(supervisor, tmp_path / "rec", frames_dir=tmp_path / "frames")
    hub = FrameHub(supervisor, recordings, resolve, fps=60, quality=2, keepalive=0.3)
    try:
        frame = await hub.snapshot("big0", timeout=20)
        assert len(frame) > 100_000  # one frame is more than the pipe holds
        await wait_until(lambda: not hub.running("big0"), 20, "reader stopped")
        assert supervisor.all() == []
    finally:
        await hub.close()
        await supervisor.shutdown()


async def test_a_stalled_viewer_costs_no_memory(tmp_path: Path) -> None:
    """~120 KB frames at 30/s to a viewer that reads nothing: were they queued, the daemon
    would grow by ~3.6 MB a second; it holds at most the frame being written."""
    import psutil

    overrides = {
        "cameras": {
            "sources": [
                {"id": "big0", "input_format": "lavfi", "input": "testsrc2=size=1920x1080:rate=30"}
            ]
        },
        "http": {"mjpeg_fps": 30, "mjpeg_quality": 2},
    }
    async with running_daemon(tmp_path, overrides) as daemon:
        urls = await camera_urls(daemon, "big0")
        path = urls["mjpeg_url"].split(str(daemon.app.http.port), 1)[1]
        async with aiohttp.ClientSession() as http, http.get(urls["mjpeg_url"]) as r:
            await read_parts(r, 10)  # warm: reader up, buffers allocated
            stalled = socket.create_connection(("127.0.0.1", daemon.app.http.port))
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stalled.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            try:
                await wait_until(lambda: daemon.app.frames.viewers("big0") == 2, what="2 viewers")
                before = psutil.Process().memory_info().rss
                reader = aiohttp.MultipartReader.from_response(r)
                sizes = []
                for _ in range(150):  # 5 s: ~18 MB the stalled viewer cannot take
                    part = await asyncio.wait_for(reader.next(), 10)
                    assert isinstance(part, aiohttp.BodyPartReader)
                    sizes.append(len(await part.read()))  # kept: the size only
                grown = psutil.Process().memory_info().rss - before
            finally:
                stalled.close()
    assert min(sizes) > 100_000
    assert grown < 6 * 1024 * 1024, f"RSS grew by {grown / 2**20:.1f} MiB"


async def test_continuous_recording_takes_the_device_and_the_stream_goes_on(
    daemon: RunningDaemon,
) -> None:
    from camera_service.storage.modes import ModeSettings

    urls = await camera_urls(daemon, "cam0")
    async with aiohttp.ClientSession() as http, http.get(urls["mjpeg_url"]) as r:
        await read_parts(r, 3)
        await daemon.app.nvr.set_mode("cam0", ModeSettings("continuous", 10, 1.0, 1.0))
        try:
            during = await read_parts(r, 3)  # the continuous recorder's own frames
            recorder = daemon.app.nvr.recorder("cam0")
            assert recorder is not None and recorder.handle is not None
            assert recorder.handle.running
        finally:
            await daemon.app.nvr.set_mode("cam0", ModeSettings("off", 10, 1.0, 1.0))
        after = await read_parts(r, 3)
    assert all(is_complete_jpeg(f) for f in during + after)
    assert daemon.app.supervisor.peak_readers("cam0") == 1
    roles = [h.role for h in daemon.app.supervisor.history("cam0") if h.reader]
    assert roles[:2] == ["frames", "continuous"] and roles[-1] == "frames"


async def test_guessing_credentials_on_camera_urls_hits_the_failed_auth_limit(
    tmp_path: Path,
) -> None:
    """Camera URLs are no way around the per-address limit of authenticate and downloads:
    refused credentials count, and past the limit even a good one gets 429 (also on
    WebSocket authenticate, the same counter)."""
    overrides = {**CAMERAS, "auth": {"failed_auth_limit": 3}}
    async with running_daemon(tmp_path, overrides) as daemon:
        url = f"{daemon.http_url}/cameras/cam1/snapshot.jpg"
        async with aiohttp.ClientSession() as http:
            for guess in ("csk_a", "csk_b", "c1.99999999999.AAAA"):
                headers = {} if guess.startswith("c1.") else {"X-API-Key": guess}
                target = f"{url}?token={guess}" if guess.startswith("c1.") else url
                async with http.get(target, headers=headers) as r:
                    assert r.status == 401
            async with http.get(url, headers={"X-API-Key": daemon.keys["viewer"]}) as r:
                assert r.status == 429
                assert int(r.headers["Retry-After"]) >= 1
        async with daemon.client() as client:
            with pytest.raises(Exception) as limited:
                await client.authenticate(daemon.keys["viewer"])
        assert getattr(limited.value, "code", None) == -32040


async def test_camera_urls_never_outlive_the_jwt_that_made_them(daemon: RunningDaemon) -> None:
    """A viewer's one-hour JWT cannot mint a year-long camera token (stream tokens follow
    the same rule); an API key, which has no expiry, gets the ttl it asks for."""
    jwt = daemon.token(Role.VIEWER, ttl=120)
    async with daemon.client() as client:
        await client.authenticate(jwt)
        urls = await client.call("get_camera_urls", {"device": "cam0", "ttl": 31_622_400})
    expires = datetime.fromisoformat(urls["expires_at"].replace("Z", "+00:00")).timestamp()
    assert expires <= time.time() + 121
    by_key = await camera_urls(daemon, "cam0", ttl=86_400)
    expires = datetime.fromisoformat(by_key["expires_at"].replace("Z", "+00:00")).timestamp()
    assert expires > time.time() + 86_000


async def test_head_of_the_mjpeg_url_answers_without_holding_a_viewer(
    daemon: RunningDaemon,
) -> None:
    """A HEAD answer has no body: the handler must not stream frames nobody receives
    (nor keep the viewer once the head is out)."""
    urls = await camera_urls(daemon, "cam0")
    async with aiohttp.ClientSession() as http, http.head(urls["mjpeg_url"]) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        await wait_until(lambda: daemon.app.frames.viewers("cam0") == 0, what="viewer released")
