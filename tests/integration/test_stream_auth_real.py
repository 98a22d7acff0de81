"""Stream access control against the real MediaMTX binary (``authMethod: http``).

Needs ``mediamtx``, ``ffmpeg`` and ``ffprobe`` on PATH, else skipped with the reason. The
daemon provisions a lavfi camera; MediaMTX asks the daemon's ``POST /mediamtx/auth`` for
every session (tests/support/stream_auth_stack.py). Checked with real clients:

* anonymous ``ffprobe rtsp://…`` and an anonymous HLS fetch are refused;
* the URLs from ``get_stream_url`` play for a viewer (RTSP and HLS), which also proves the
  daemon's own on-demand publisher gets through with its publisher credential;
* a revoked key cannot start a new session, and its running session is kicked;
* publishing from outside (anonymous, with a viewer key, to an unknown path) is refused.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from camera_service.auth.roles import Role
from camera_service.logging import AUDIT_LOGGER
from tests.support.stream_auth_stack import (
    Stack,
    ffprobe,
    have_real_mediamtx,
    run,
    stream_auth_stack,
)

pytestmark = pytest.mark.skipif(
    not have_real_mediamtx(), reason="skipped: mediamtx, ffmpeg or ffprobe not found on PATH"
)
READ_TIMEOUT = 30.0


async def fetch_hls(url: str, deadline_s: float = READ_TIMEOUT) -> tuple[int, str]:
    """GET the playlist; MediaMTX answers 404 until its muxer has segments, so retry on 404
    (only) until the deadline."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.get(url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
                status, text = resp.status, await resp.text()
            if status != 404 or loop.time() >= end:
                return status, text
            await asyncio.sleep(0.2)  # polling MediaMTX's muxer start, bounded by the deadline


async def test_anonymous_readers_are_refused_and_stream_urls_play(tmp_path: Path) -> None:
    async with stream_auth_stack(tmp_path) as stack:
        code, out = await ffprobe(stack.url("rtsp"))
        assert code != 0 and "401" in out, out
        status, _ = await fetch_hls(stack.url("hls"), deadline_s=0)
        assert status == 401

        async with stack.daemon.client("viewer") as client:
            result = await client.call("get_stream_url", {"device": "cam0"})
        code, out = await ffprobe(result["streams"]["rtsp"])
        assert (code, out.strip()) == (0, "h264"), out
        status, playlist = await fetch_hls(result["streams"]["hls"])
        assert status == 200 and playlist.startswith("#EXTM3U"), playlist

        other = result["streams"]["rtsp"].replace("/cam0?", "/cam1?")
        code, out = await ffprobe(other)
        assert code != 0, out


async def test_revoked_key_cannot_start_a_session_and_is_kicked(tmp_path: Path) -> None:
    async with stack_with_key(tmp_path) as (stack, key, key_id):
        url = stack.url("rtsp").replace("rtsp://", f"rtsp://kiosk:{key}@")
        code, out = await ffprobe(url)
        assert (code, out.strip()) == (0, "h264"), out
        reader = await asyncio.create_subprocess_exec(
            "ffmpeg", "-v", "error", "-rtsp_transport", "tcp", "-i", url, "-f", "null", "-",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            await wait_for_readers(stack, "cam0", 1)
            stack.daemon.app.keys.revoke(key_id)
            code, out = await ffprobe(url)
            assert code != 0 and "401" in out, out
            await asyncio.wait_for(reader.wait(), 15)  # kicked by the daemon through the API
        finally:
            if reader.returncode is None:
                reader.kill()
                await reader.wait()


async def test_outside_publishers_are_refused(tmp_path: Path) -> None:
    async with stream_auth_stack(tmp_path) as stack:
        viewer = stack.daemon.keys["admin"]
        targets = [
            stack.url("rtsp"),  # anonymous, onto the camera's path
            stack.url("rtsp").replace("rtsp://", f"rtsp://admin:{viewer}@"),
            stack.url("rtsp", "intruder"),  # a path that is no camera
        ]
        for target in targets:
            code, out = await run(
                "ffmpeg", "-v", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=160x120",
                "-t", "3", "-c:v", "libx264", "-preset", "ultrafast", "-f", "rtsp",
                "-rtsp_transport", "tcp", target, timeout=READ_TIMEOUT,
            )  # fmt: skip
            assert code != 0 and "401" in out, (target.split("@")[-1], out)
        async with stack.daemon.client("viewer") as client:
            result = await client.call("get_stream_url", {"device": "cam0"})
        code, out = await ffprobe(result["streams"]["rtsp"])  # the daemon's publisher works
        assert (code, out.strip()) == (0, "h264"), out


async def test_daemon_reads_its_own_streams_through_the_access_control(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A single-reader camera while streamed: snapshots and recordings come from MediaMTX
    (the daemon's FFmpeg readers carry stream tokens), nothing is denied to the daemon."""
    async with stream_auth_stack(tmp_path, exclusive=True) as stack:
        caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
        async with stack.daemon.client("operator") as client:
            await client.call("start_streaming", {"device": "cam0"})
            shot = await client.call("take_snapshot", {"device": "cam0"})
            assert shot["status"] == "SUCCESS" and shot["file_size"] > 0
            rec = await client.call("start_recording", {"device": "cam0", "format": "mp4"})
            await wait_for_readers(stack, "cam0", 2)  # the holder and the recording
            stopped = await client.call("stop_recording", {"device": "cam0"})
        assert stopped["file_size"] > 0, (rec, stopped)
        path = stack.daemon.app.config.storage.recordings_dir / stopped["filename"]
        code, out = await ffprobe(str(path))
        assert (code, out.strip()) == (0, "h264"), out
    denied = [
        vars(r) for r in caplog.records
        if r.getMessage() == "stream access denied" and vars(r).get("credential") != "none"
    ]  # fmt: skip
    assert denied == []


async def wait_for_readers(stack: Stack, name: str, count: int, timeout: float = 20.0) -> None:
    service = stack.daemon.app.mediamtx
    camera = stack.daemon.app.cameras.get(name)
    assert camera is not None
    deadline = time.monotonic() + timeout
    while True:
        path = await service.path_state(camera)
        if path is not None and path.reader_count >= count:
            return
        assert time.monotonic() < deadline, "no reader arrived"
        await asyncio.sleep(0.2)  # polling MediaMTX's API, bounded by the deadline


@asynccontextmanager
async def stack_with_key(tmp_path: Path) -> AsyncIterator[tuple[Stack, str, str]]:
    async with stream_auth_stack(tmp_path) as stack:
        key, record = stack.daemon.app.keys.create("kiosk", Role.VIEWER)
        yield stack, key, record.id
