"""The browser client's timeline against a real daemon recording continuously, in headless
Chromium: segments and motion events of the last hours, click to play, export a clip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from camera_service.storage.modes import ModeSettings
from tests.e2e.conftest import BrowserPage, expect, ffprobe_json, sign_in
from tests.support.daemon import RunningDaemon, running_daemon
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

MOVING_CAMERA = {
    "cameras": {
        "sources": [
            {
                "id": "demo0",
                "name": "Test pattern",
                "input_format": "lavfi",
                "input": "testsrc2=size=320x240:rate=10",
            }
        ]
    },
    "ffmpeg": {"preset": "ultrafast", "bitrate": "300k"},
    "motion": {"enabled": True, "min_duration": 0.5, "end_after": 1.0},
}


async def test_timeline_shows_segments_and_events_plays_and_exports(
    tmp_path: Path, page: BrowserPage, screenshot_dir: Path
) -> None:
    async with running_daemon(tmp_path, MOVING_CAMERA) as daemon:
        await daemon.app.nvr.set_mode("demo0", ModeSettings("continuous", 2, 1.0, 1.0))
        await _two_segments_and_an_event(daemon)
        p = page.page
        await sign_in(p, daemon.http_url, daemon.ws_url, daemon.keys["operator"])
        await p.get_by_role("link", name="Timeline").click()
        await expect(p.get_by_role("heading", name="Timeline")).to_be_visible()
        await expect(p.locator("#timeline-mode-state")).to_contain_text("continuous (recording)")
        await p.get_by_label("Period").select_option(label="Last 10 minutes")
        segments = p.locator("#timeline-bar .tl-segment")
        await expect(segments.first).to_be_visible()
        assert await segments.count() >= 2
        await expect(p.locator("#timeline-bar .tl-event").first).to_be_attached()
        await expect(p.locator("#timeline-summary")).to_contain_text("motion events")

        await segments.first.click()
        video = p.locator("#timeline-video")
        await expect(p.locator("#timeline-playing")).to_contain_text("Segment")
        await _wait_for_js(p, "() => document.querySelector('#timeline-video').readyState >= 1")
        duration = await video.evaluate("v => v.duration")
        assert 1.0 < duration < 4.0

        await p.get_by_role("button", name="Export clip").click()
        status = p.locator("#timeline-export-status")
        await expect(status).to_contain_text("Clip demo0_clip_")
        await p.evaluate("document.querySelectorAll('.notice').forEach((n) => n.remove())")
        await p.screenshot(path=str(screenshot_dir / "timeline.png"))
        listing = await daemon.app.files.list("recordings")
        clips = [e for e in listing.files if e.filename.startswith("demo0_clip_")]
        assert len(clips) == 1
        probe = ffprobe_json(clips[0].path)
        assert probe["streams"][0]["codec_name"] == "h264"
        assert float(probe["format"]["duration"]) > 1.0

        await p.locator("#timeline-mode").select_option("off")
        await p.locator("#timeline-mode-form").get_by_role("button", name="Apply").click()
        await wait_until(lambda: daemon.app.nvr.settings("demo0").mode == "off", 10, "mode off")
        await expect(p.locator("#timeline-mode-state")).to_contain_text("off")
        page.assert_clean()


async def test_viewer_sees_the_timeline_without_controls(tmp_path: Path, page: BrowserPage) -> None:
    async with running_daemon(tmp_path, MOVING_CAMERA) as daemon:
        p = page.page
        await sign_in(p, daemon.http_url, daemon.ws_url, daemon.keys["viewer"])
        await p.get_by_role("link", name="Timeline").click()
        await expect(p.locator("#timeline-summary")).to_have_text("No footage in this period.")
        await expect(p.locator("#timeline-mode-form")).to_be_hidden()
        await expect(p.locator("#timeline-export-form")).to_be_hidden()
        page.assert_clean()


async def _two_segments_and_an_event(daemon: RunningDaemon) -> None:
    nvr = daemon.app.nvr
    await wait_until(lambda: bool(nvr.events.all()), 30, "a motion event")
    loop_deadline = 30.0
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + loop_deadline
    while len([s for s in await nvr.segments("demo0") if s.complete]) < 2:
        assert loop.time() < deadline, "no two segments"
        await asyncio.sleep(0.2)


async def _wait_for_js(p: Any, predicate: str) -> None:
    """Wait until the JS function ``predicate`` returns true. A function, not an expression:
    Playwright evals an expression again at every poll, which the client's CSP (no
    'unsafe-eval') refuses once the first check is false; a function is evaled once."""
    assert "=>" in predicate, predicate
    await p.wait_for_function(predicate, timeout=15_000)
