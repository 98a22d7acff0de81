"""The Image & capture panel in headless Chromium against a daemon with a fake USB camera
(discovery seam + fake control ioctls): operators edit controls and capture settings,
viewers only read them. Every wait is a Playwright auto-waiting assertion."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from camera_service.cameras import v4l2_abi as abi
from tests.e2e.conftest import BrowserPage, expect, new_page, sign_in
from tests.support.daemon import RunningDaemon, running_daemon
from tests.support.fake_controls import FakeCameraRig, FakeControlDevice

pytestmark = pytest.mark.slow


@pytest.fixture
async def rigged(tmp_path: Path) -> AsyncIterator[tuple[RunningDaemon, FakeControlDevice]]:
    rig = FakeCameraRig()
    device = rig.plug(0)
    async with running_daemon(tmp_path, None, **rig.seams) as daemon:
        await asyncio.wait_for(daemon.app.discovery.first_scan_done.wait(), 5)
        yield daemon, device


def panel(page: Any) -> Any:
    card = page.locator('article.camera[data-device="camera0"]')
    return card.locator("details.tuning")


async def open_panel(page: Any) -> Any:
    tuning = panel(page)
    await tuning.locator("summary").click()
    await expect(tuning.get_by_label("Brightness")).to_be_visible()
    return tuning


async def test_operator_edits_controls_and_capture_settings(
    rigged: tuple[RunningDaemon, FakeControlDevice], page: BrowserPage, screenshot_dir: Path
) -> None:
    daemon, device = rigged
    p = page.page
    await sign_in(p, daemon.http_url, daemon.ws_url, daemon.keys["operator"])
    tuning = await open_panel(p)

    # slider
    brightness = tuning.get_by_label("Brightness")
    await expect(brightness).to_have_value("128")
    await brightness.fill("200")
    await expect(tuning.get_by_role("status").last).to_have_text("Brightness set to 200.")
    assert device.value_of(abi.CID_BRIGHTNESS) == 200

    # switch: the manual focus is inactive until autofocus is off
    focus = tuning.get_by_label("Focus, Absolute")
    await expect(focus).to_be_disabled()
    await tuning.get_by_role("switch", name="Focus, Automatic Continuous").uncheck()
    await expect(tuning.get_by_label("Focus, Absolute")).to_be_enabled()
    assert device.value_of(abi.CID_FOCUS_AUTO) == 0
    await tuning.get_by_label("Focus, Absolute").fill("125")
    await expect(tuning.get_by_role("status").last).to_have_text("Focus, Absolute set to 125.")
    assert device.value_of(abi.CID_FOCUS_ABSOLUTE) == 125

    # menu
    await tuning.get_by_label("Power Line Frequency").select_option(label="50 Hz")
    await expect(tuning.get_by_role("status").last).to_have_text("Power Line Frequency set to 1.")
    assert device.value_of(abi.CID_POWER_LINE_FREQUENCY) == 1

    # read-only controls cannot be edited
    await expect(tuning.get_by_role("switch", name="Privacy")).to_be_disabled()

    # capture settings: auto chose H264 (copied); switch to MJPG 1280x720 at 30 fps
    await expect(tuning).to_contain_text("In use: H264")
    await expect(tuning).to_contain_text("without re-encoding")
    await tuning.get_by_label("Pixel format").select_option("MJPG")
    await tuning.get_by_label("Resolution").select_option("1280x720")
    await tuning.get_by_label("Frame rate").select_option("30")
    await tuning.get_by_role("button", name="Apply settings").click()
    await expect(tuning).to_contain_text("In use: MJPG 1280x720 at 30 fps")
    await expect(tuning).to_contain_text("encoded with libx264")
    card = p.locator('article.camera[data-device="camera0"]')
    await expect(card.locator(".camera-meta")).to_contain_text("1280x720")
    camera = daemon.app.cameras.get("camera0")
    assert camera is not None and camera.pixel_format == "MJPG"
    await tuning.screenshot(path=str(screenshot_dir / "camera-tuning.png"))

    # a change from another client shows up through the camera_controls notification
    async with daemon.client("operator") as other:
        await other.call("set_camera_controls", {"device": "camera0", "controls": {"contrast": 40}})
    await expect(tuning.get_by_label("Contrast")).to_have_value("40")

    # reset
    await tuning.get_by_role("button", name="Reset to defaults").click()
    await expect(tuning.get_by_role("status").last).to_have_text(
        "Controls reset to the camera defaults."
    )
    await expect(tuning.get_by_label("Brightness")).to_have_value("128")
    assert device.value_of(abi.CID_FOCUS_AUTO) == 1
    page.assert_clean()


async def test_viewer_sees_controls_read_only(
    rigged: tuple[RunningDaemon, FakeControlDevice], browser: Any
) -> None:
    daemon, device = rigged
    page = await new_page(browser)
    try:
        p = page.page
        await sign_in(p, daemon.http_url, daemon.ws_url, daemon.keys["viewer"])
        tuning = await open_panel(p)
        await expect(tuning).to_contain_text("Viewer role: read-only")
        await expect(tuning.get_by_label("Brightness")).to_be_disabled()
        await expect(tuning.get_by_label("Pixel format")).to_be_disabled()
        await expect(tuning.get_by_role("button", name="Apply settings")).to_have_count(0)
        await expect(tuning.get_by_role("button", name="Reset to defaults")).to_have_count(0)
        assert device.writes == []
        page.assert_clean()
    finally:
        await page.page.context.close()
