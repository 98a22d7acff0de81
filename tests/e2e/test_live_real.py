"""Live view for real: the browser client plays a camera through a real MediaMTX.

WebRTC (WHEP) first; with MediaMTX's WebRTC server off, the client falls back to HLS
(hls.js in Chromium). Each test checks that video frames really advance
(``video.currentTime`` grows and the decoded picture has the camera's size). Skipped with
the reason when ``mediamtx`` is not on PATH (CI has no binary).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import LAVFI_CAMERA, expect, new_page, sign_in
from tests.support.daemon import RunningDaemon, running_daemon
from tests.support.real_mediamtx import RealMediaMTX

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("mediamtx") is None, reason="skipped: mediamtx not found on PATH"
    ),
]

ADVANCE_S = 1.0


def live_overrides(server: RealMediaMTX) -> dict[str, Any]:
    return {
        **LAVFI_CAMERA,
        "mediamtx": {
            "enabled": True,
            "api_url": server.api_url,
            "public_host": "127.0.0.1",
            "rtsp_port": server.ports.rtsp,
            "hls_port": server.ports.hls,
            "webrtc_port": server.ports.webrtc,
            "health_interval": 1.0,
        },
    }


@asynccontextmanager
async def live_daemon(tmp_path: Path, **mediamtx: Any) -> AsyncIterator[RunningDaemon]:
    """A real MediaMTX (HLS on; WebRTC as asked) and a daemon whose paths are in it."""
    work = tmp_path / "mediamtx"
    work.mkdir()
    server = RealMediaMTX(work, hls=True, **mediamtx)
    async with server, running_daemon(tmp_path, live_overrides(server)) as daemon:
        await asyncio.wait_for(daemon.app.mediamtx.reconciled.wait(), 15)
        yield daemon


async def frames_advance(page: Any, card: Any) -> None:
    """``currentTime`` grows by ADVANCE_S and the picture is the camera's 320x240."""
    video = card.locator("video.live-video")
    start = await video.evaluate("v => v.currentTime")
    await page.wait_for_function(
        "([el, t0, d]) => el.currentTime > t0 + d && el.videoWidth === 320",
        arg=[await video.element_handle(), start, ADVANCE_S],
        timeout=20_000,
    )


@pytest.mark.parametrize(
    ("webrtc", "kind"),
    [(True, "WebRTC"), (False, "HLS")],
    ids=["webrtc", "hls-fallback"],
)
async def test_live_view_plays_and_frames_advance(
    tmp_path: Path, browser: Any, webrtc: bool, kind: str
) -> None:
    async with live_daemon(tmp_path, webrtc=webrtc) as daemon:
        wrapped = await new_page(browser)
        page = wrapped.page
        try:
            await sign_in(page, daemon.http_url, daemon.ws_url, daemon.keys["viewer"])
            card = page.locator('article.camera[data-device="demo0"]')
            await card.get_by_text("Live view").click()
            await expect(card.locator(".live-status")).to_have_text(f"Live over {kind}.")
            await frames_advance(page, card)
            if not webrtc:  # the WHEP POST to the closed WebRTC port failed first, by design
                refused = "net::ERR_CONNECTION_REFUSED"
                assert sum(refused in e for e in wrapped.console_errors) == 1
                wrapped.console_errors = [e for e in wrapped.console_errors if refused not in e]
            wrapped.assert_clean()
        finally:
            await page.context.close()
