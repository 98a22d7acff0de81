"""Camera URLs of a single-reader camera that a real MediaMTX publishes: the live frames come
from its RTSP stream (with a stream token), never from a second open of the device."""

from __future__ import annotations

import aiohttp
import pytest

from camera_service.media.snapshots import is_complete_jpeg
from tests.integration.test_camera_urls import read_parts
from tests.integration.test_mediamtx_real import (
    daemon_overrides,
    lavfi,
    mediamtx,
    needs_mediamtx,
    wait_reconciled,
)
from tests.support.daemon import running_daemon
from tests.support.real_mediamtx import RealMediaMTX

__all__ = ["mediamtx"]  # fixture
pytestmark = [needs_mediamtx, pytest.mark.timeout(90)]


async def test_mjpeg_of_a_streamed_camera_reads_the_stream(
    tmp_path: pytest.TempPathFactory, mediamtx: RealMediaMTX
) -> None:
    overrides = daemon_overrides(mediamtx, lavfi("cam0", exclusive=True))
    async with running_daemon(tmp_path, overrides) as daemon:  # type: ignore[arg-type]
        await wait_reconciled(daemon, "cam0")
        async with daemon.client("operator") as rpc:
            await rpc.call("start_streaming", {"device": "cam0"})
            urls = await rpc.call("get_camera_urls", {"device": "cam0"})
        async with aiohttp.ClientSession() as http, http.get(urls["mjpeg_url"]) as r:
            assert r.status == 200
            frames = await read_parts(r, 5)
            async with http.get(urls["snapshot_url"]) as still:
                assert still.status == 200
                assert is_complete_jpeg(await still.read())
        assert all(is_complete_jpeg(f) for f in frames)
        assert len(set(frames)) >= 3
        history = daemon.app.supervisor.history("cam0")
        frame_readers = [h for h in history if h.role == "frames"]
        assert frame_readers and not any(h.reader for h in frame_readers)
        assert any(a.startswith("rtsp://") for a in frame_readers[0].argv)
        assert daemon.app.supervisor.peak_readers("cam0") == 0  # MediaMTX holds the device
