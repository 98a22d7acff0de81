"""Chromium shows the MJPEG URL as a moving picture in a plain <img> (what dashboards do)."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import pytest

from tests.e2e.conftest import BrowserPage
from tests.support.daemon import RunningDaemon
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(90)


async def test_img_tag_shows_changing_mjpeg_frames(
    page: BrowserPage, daemon: RunningDaemon
) -> None:
    async with daemon.client("viewer") as client:
        urls: dict[str, Any] = await client.call("get_camera_urls", {"device": "demo0"})
    p = page.page
    # Same origin as the client, so the page's CSP (img-src 'self') applies as in real use.
    await p.goto(f"{daemon.http_url}/client-config.json")
    await p.set_content(
        f'<img id="live" src="{urls["mjpeg_url"]}"><img id="still" src="{urls["snapshot_url"]}">'
    )
    live = p.locator("#live")
    await p.wait_for_function(
        "() => document.getElementById('live').naturalWidth === 320"
        " && document.getElementById('still').naturalWidth === 320",
        timeout=15_000,
    )
    seen: set[str] = set()

    async def three_pictures() -> None:
        while len(seen) < 3:
            seen.add(hashlib.sha256(await live.screenshot()).hexdigest())

    await asyncio.wait_for(three_pictures(), 20)  # bounded: three different pictures
    await wait_until(lambda: daemon.app.frames.viewers("demo0") == 1, what="one MJPEG viewer")
    assert daemon.app.supervisor.peak_readers("demo0") == 1
