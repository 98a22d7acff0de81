"""The browser's live view with stream access control on, against the real MediaMTX
(skipped with the reason when ``mediamtx``/``ffmpeg`` are not on PATH).

* The browser client plays the camera over WebRTC (WHEP with the stream token in the query).
* MediaMTX's HLS player page (hls.js, served by MediaMTX) plays the HLS URL the API handed
  out in chromium; the same page without the token is refused (401).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import expect, new_page, sign_in
from tests.support.stream_auth_stack import have_real_mediamtx, stream_auth_stack

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not have_real_mediamtx(), reason="skipped: mediamtx, ffmpeg or ffprobe not found on PATH"
    ),
]
PLAY_TIMEOUT_MS = 30_000


async def test_live_view_plays_over_webrtc_with_the_token(tmp_path: Path, browser: Any) -> None:
    async with stream_auth_stack(tmp_path) as stack:
        daemon = stack.daemon
        wrapped = await new_page(browser)
        p = wrapped.page
        try:
            await sign_in(p, daemon.http_url, daemon.ws_url, daemon.keys["viewer"])
            card = p.locator('article.camera[data-device="cam0"]')
            await expect(card.locator(".badge")).to_have_text("Connected")
            await card.get_by_text("Stream URLs").click()
            await expect(card.get_by_label("RTSP", exact=True)).to_have_value(
                re.compile(r"^rtsp://127\.0\.0\.1:\d+/cam0\?token=cst1\.\d+\.[0-9a-f]+\.")
            )  # bound to the viewer's key
            await expect(card.locator(".streams")).to_contain_text("Start playing before")
            await card.get_by_text("Live view").click()
            await expect(card.locator(".live-status")).to_have_text(
                "Live over WebRTC.", timeout=PLAY_TIMEOUT_MS
            )
            await expect(card.locator("video.live-video")).to_have_js_property(
                "videoWidth", 320, timeout=PLAY_TIMEOUT_MS
            )
            assert wrapped.console_errors == []
        finally:
            await p.context.close()


async def test_mediamtx_hls_page_plays_with_the_token_only(tmp_path: Path, browser: Any) -> None:
    async with stream_auth_stack(tmp_path) as stack:
        async with stack.daemon.client("viewer") as client:
            result = await client.call("get_stream_url", {"device": "cam0"})
        playlist = result["streams"]["hls"]
        page_url = playlist.replace("/index.m3u8?", "/?")
        wrapped = await new_page(browser)
        p = wrapped.page
        try:
            # Without the token MediaMTX asks for credentials (the daemon refused).
            refused = await p.context.request.get(page_url.partition("?")[0])
            assert refused.status == 401
            answered = await p.goto(page_url)
            assert answered is not None and answered.status == 200
            await expect(p.locator("video")).to_have_js_property(
                "videoWidth", 320, timeout=PLAY_TIMEOUT_MS
            )
        finally:
            await p.context.close()
