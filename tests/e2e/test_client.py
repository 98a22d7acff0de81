"""The browser client against a real daemon, in headless Chromium.

Every wait is a Playwright auto-waiting assertion on what the page shows."""

from __future__ import annotations

import inspect
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from camera_service.app import Application
from camera_service.auth.roles import Role
from tests.e2e.conftest import (
    LAVFI_CAMERA,
    BrowserPage,
    client_url,
    expect,
    ffprobe_json,
    new_page,
    sign_in,
)
from tests.support.daemon import RunningDaemon, make_config, running_daemon
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow


def camera_card(page: Any, device: str) -> Any:
    return page.locator(f'article.camera[data-device="{device}"]')


async def screenshot(page: Any, path: Path, **kwargs: Any) -> None:
    """A screenshot without the transient notices covering the view."""
    await page.evaluate("document.querySelectorAll('.notice').forEach((n) => n.remove())")
    await page.screenshot(path=str(path), **kwargs)


async def test_sign_in_with_admin_key_lists_the_camera(
    daemon: RunningDaemon, page: BrowserPage, screenshot_dir: Path
) -> None:
    p = page.page
    await p.goto(client_url(daemon.http_url, daemon.ws_url))
    await expect(p.get_by_role("heading", name="Sign in")).to_be_visible()
    await screenshot(p, screenshot_dir / "sign-in.png")

    await p.get_by_label("API key or JWT").fill(daemon.keys["admin"])
    await p.get_by_role("button", name="Sign in").click()

    await expect(p.locator("#conn-text")).to_have_text("Connected")
    await expect(p.locator("#role-badge")).to_have_text("admin")
    card = camera_card(p, "demo0")
    await expect(card.get_by_role("heading", name="Test pattern")).to_be_visible()
    await expect(card.locator(".badge")).to_have_text("Connected")
    await expect(card).to_contain_text("320x240")
    await expect(p.get_by_role("link", name="System")).to_be_visible()
    # The key lives in sessionStorage only, never in the URL.
    assert daemon.keys["admin"] not in p.url
    stored = await p.evaluate("Object.values(sessionStorage)")
    assert daemon.keys["admin"] in stored
    page.assert_clean()


async def test_sign_in_with_a_jwt_and_sign_out(daemon: RunningDaemon, page: BrowserPage) -> None:
    p = page.page
    await sign_in(p, daemon.http_url, daemon.ws_url, daemon.token(Role.OPERATOR))
    await expect(p.locator("#role-badge")).to_have_text("operator")
    await expect(
        camera_card(p, "demo0").get_by_role("button", name="Take snapshot")
    ).to_be_visible()
    await p.get_by_role("button", name="Sign out").click()
    await expect(p.get_by_role("heading", name="Sign in")).to_be_visible()
    await expect(p.locator("#signin-status")).to_have_text("You signed out.")
    assert await p.evaluate("sessionStorage.length") == 0
    page.assert_clean()


async def test_bad_credentials_give_a_readable_error(
    daemon: RunningDaemon, page: BrowserPage
) -> None:
    p = page.page
    await p.goto(client_url(daemon.http_url, daemon.ws_url))
    await p.get_by_label("API key or JWT").fill("not-a-real-key")
    await p.get_by_role("button", name="Sign in").click()
    status = p.locator("#signin-status")
    await expect(status).to_contain_text("Sign-in failed")
    await expect(status).to_contain_text(re.compile("auth", re.I))
    await expect(p.get_by_label("API key or JWT")).to_be_visible()
    assert "Traceback" not in (await status.inner_text())


async def test_revoked_key_returns_to_sign_in(daemon: RunningDaemon, page: BrowserPage) -> None:
    p = page.page
    await sign_in(p, daemon.http_url, daemon.ws_url, daemon.keys["admin"])
    await p.get_by_role("link", name="Files").click()
    await expect(p.locator("#files-body")).to_contain_text("No recordings yet")
    record = next(r for r in daemon.app.keys.list() if r.name == "test-admin")
    daemon.app.keys.revoke(record.id)
    await p.get_by_role("button", name="Refresh").click()
    await expect(p.get_by_role("heading", name="Sign in")).to_be_visible()
    await expect(p.locator("#signin-status")).to_contain_text("no longer accepted")
    assert await p.evaluate("sessionStorage.length") == 0


async def test_snapshot_shows_a_preview(daemon: RunningDaemon, page: BrowserPage) -> None:
    p = page.page
    await sign_in(p, daemon.http_url, daemon.ws_url, daemon.keys["operator"])
    card = camera_card(p, "demo0")
    await card.get_by_role("button", name="Take snapshot").click()
    image = card.locator("figure.preview img")
    await expect(image).to_be_visible()
    await expect(image).to_have_js_property("naturalWidth", 320)
    await expect(card.locator("figure.preview figcaption")).to_contain_text("demo0_")

    await card.get_by_text("Capabilities").click()
    caps = card.locator(".caps-body")
    await expect(caps).to_contain_text("Resolutions")
    await expect(caps).to_contain_text("320x240")
    page.assert_clean()


async def test_recording_started_elsewhere_shows_live_and_can_be_stopped(
    daemon: RunningDaemon, page: BrowserPage
) -> None:
    p = page.page
    await sign_in(p, daemon.http_url, daemon.ws_url, daemon.keys["operator"])
    card = camera_card(p, "demo0")
    await expect(card.get_by_role("button", name="Start recording")).to_be_enabled()
    async with daemon.client("operator") as rpc:
        await rpc.call("start_recording", {"device": "demo0"})
    await expect(card.locator(".rec")).to_be_visible()
    await card.get_by_role("button", name="Stop recording").click()
    await expect(card.locator(".rec")).to_be_hidden()
    await expect(p.locator("#notices")).to_contain_text("Recording saved")
    page.assert_clean()


async def test_server_errors_are_shown_as_sentences(
    daemon: RunningDaemon, page: BrowserPage
) -> None:
    async with daemon.client("operator") as rpc:
        shot = await rpc.call("take_snapshot", {"device": "demo0"})
    p = page.page
    await sign_in(p, daemon.http_url, daemon.ws_url, daemon.keys["admin"])
    await p.get_by_role("link", name="Files").click()
    await p.get_by_role("tab", name="Snapshots").click()
    name = shot["filename"]
    row = p.locator(f'#files-body tr[data-filename="{name}"]')
    await expect(row).to_be_visible()
    async with daemon.client("admin") as rpc:  # someone else deletes it first
        await rpc.call("delete_snapshot", {"filename": name})
    await row.get_by_role("button", name=re.compile("^Delete")).click()
    await p.get_by_role("dialog").get_by_role("button", name="Delete").click()
    alert = p.locator("#alerts .notice").last
    await expect(alert).to_contain_text("Delete failed:")
    await expect(alert).to_contain_text(re.compile("not found", re.I))
    await expect(row).to_have_count(0)  # the listing was refreshed
    assert "Error:" not in await alert.inner_text()


async def test_timed_recording_stops_by_itself_then_download_and_delete(
    daemon: RunningDaemon, page: BrowserPage, tmp_path: Path, screenshot_dir: Path
) -> None:
    p = page.page
    await sign_in(p, daemon.http_url, daemon.ws_url, daemon.keys["admin"])
    card = camera_card(p, "demo0")
    await card.get_by_role("button", name="Take snapshot").click()
    await expect(card.locator("figure.preview img")).to_have_js_property("naturalWidth", 320)
    await card.get_by_role("button", name="Timed recording…").click()
    dialog = p.get_by_role("dialog")
    await dialog.get_by_label("Duration").fill("2")
    await dialog.get_by_role("button", name="Start recording").click()

    await expect(card.locator(".rec")).to_be_visible()
    await expect(card.get_by_role("button", name="Stop recording")).to_be_visible()
    await expect(card.get_by_role("timer")).to_contain_text("/ 0:02")
    await screenshot(p, screenshot_dir / "cameras.png")
    # Nobody presses stop: the server ends it and the card follows the notification.
    await expect(card.locator(".rec")).to_be_hidden(timeout=20_000)
    await expect(card.get_by_role("button", name="Start recording")).to_be_enabled()
    await expect(p.locator("#notices")).to_contain_text("duration reached")

    await p.get_by_role("link", name="Files").click()
    row = p.locator("#files-body tbody tr").first
    await expect(row).to_contain_text("demo0_")
    await expect(row.locator('td[data-label="Duration"]')).to_have_text(re.compile(r"0:0[23]"))
    await expect(p.locator("#storage")).to_contain_text("used")
    filename = await row.get_attribute("data-filename")
    assert filename and filename.endswith(".mp4")
    await screenshot(p, screenshot_dir / "files.png")

    async with p.expect_download() as info:
        await row.get_by_role("link", name=f"Download {filename}").click()
    download = await info.value
    saved = tmp_path / "downloaded.mp4"
    await download.save_as(saved)
    probe = ffprobe_json(saved)
    assert any(s["codec_type"] == "video" for s in probe["streams"])
    assert 1.0 <= float(probe["format"]["duration"]) <= 4.0

    await row.get_by_role("button", name=f"Delete {filename}").click()
    confirm = p.get_by_role("dialog")
    await expect(confirm).to_contain_text(filename)
    await confirm.get_by_role("button", name="Delete").click()
    await expect(p.locator(f'#files-body tr[data-filename="{filename}"]')).to_have_count(0)
    await expect(p.locator("#files-body")).to_contain_text("No recordings yet")
    page.assert_clean()


async def test_keyboard_only_use(daemon: RunningDaemon, page: BrowserPage) -> None:
    p = page.page
    await p.goto(client_url(daemon.http_url, daemon.ws_url))
    await expect(p.get_by_label("API key or JWT")).to_be_focused()
    await p.keyboard.type(daemon.keys["operator"])
    await p.keyboard.press("Enter")
    await expect(p.locator("#conn-text")).to_have_text("Connected")
    timed = camera_card(p, "demo0").get_by_role("button", name="Timed recording…")
    await timed.focus()
    await p.keyboard.press("Enter")
    dialog = p.get_by_role("dialog")
    await expect(dialog.get_by_label("Duration")).to_be_focused()
    await p.keyboard.press("Escape")
    await expect(dialog).to_have_count(0)
    await expect(timed).to_be_focused()

    await p.get_by_role("link", name="Files").focus()
    await p.keyboard.press("Enter")
    await expect(p.get_by_role("heading", name="Files")).to_be_focused()
    await p.get_by_role("tab", name="Recordings").focus()
    await p.keyboard.press("ArrowRight")
    snapshots = p.get_by_role("tab", name="Snapshots")
    await expect(snapshots).to_be_focused()
    await expect(snapshots).to_have_attribute("aria-selected", "true")
    await expect(p.locator("#files-body")).to_contain_text("No snapshots yet")
    page.assert_clean()


async def test_live_view_without_streaming_shows_mjpeg(
    daemon: RunningDaemon, page: BrowserPage
) -> None:
    p = page.page
    await sign_in(p, daemon.http_url, daemon.ws_url, daemon.keys["viewer"])
    card = camera_card(p, "demo0")
    await card.get_by_text("Live view").click()
    await expect(card.locator("img.live-img")).to_have_js_property("naturalWidth", 320)
    await expect(card.locator(".live-status")).to_contain_text("Live MJPEG")
    await wait_until(lambda: daemon.app.frames.viewers("demo0") == 1, what="MJPEG viewer")
    await card.get_by_text("Live view").click()  # closing ends the MJPEG connection
    await expect(card.locator("img.live-img")).to_be_hidden()
    await wait_until(lambda: daemon.app.frames.viewers("demo0") == 0, what="viewer gone")
    snapshots = daemon.app.config.storage.snapshots_dir
    assert not snapshots.exists() or not any(snapshots.iterdir())  # nothing was stored
    page.assert_clean()


async def test_plain_urls_are_listed_and_copyable(daemon: RunningDaemon, page: BrowserPage) -> None:
    p = page.page
    await p.context.grant_permissions(["clipboard-read", "clipboard-write"])
    await sign_in(p, daemon.http_url, daemon.ws_url, daemon.keys["viewer"])
    card = camera_card(p, "demo0")
    await card.get_by_text("Snapshot and MJPEG URLs").click()
    snapshot = card.get_by_label("Snapshot", exact=True)
    await expect(snapshot).to_have_value(
        re.compile(rf"^{daemon.http_url}/cameras/demo0/snapshot\.jpg\?token=c1\.")
    )
    await expect(card.get_by_label("MJPEG", exact=True)).to_have_value(
        re.compile(r"/cameras/demo0/stream\.mjpg\?token=c1\.")
    )
    await card.get_by_role("button", name="Copy Snapshot URL").click()
    await expect(p.locator("#notices")).to_contain_text("Snapshot URL copied")
    copied = await p.evaluate("navigator.clipboard.readText()")
    assert copied == await snapshot.input_value()
    page.assert_clean()


async def test_stream_urls_copy_and_live_view_fallback(tmp_path: Path, browser: Any) -> None:
    """MediaMTX enabled but down: the stream URLs are listed and copyable, live video fails
    with a sentence and the card falls back to refreshed snapshots (FFmpeg reads directly)."""
    down = {
        **LAVFI_CAMERA,
        "mediamtx": {
            "enabled": True,
            "api_url": "http://127.0.0.1:9",
            "rtsp_port": 9,
            "hls_port": 9,
            "webrtc_port": 9,
            "request_timeout": 0.5,
        },
    }
    async with running_daemon(tmp_path, down) as daemon:
        wrapped = await new_page(browser)
        p = wrapped.page
        await p.context.grant_permissions(["clipboard-read", "clipboard-write"])
        try:
            await sign_in(p, daemon.http_url, daemon.ws_url, daemon.keys["operator"])
            card = camera_card(p, "demo0")
            await expect(card.locator(".badge")).to_have_text("Connected")
            listed = (await _camera_list(daemon))[0]["streams"]["rtsp"]
            await card.get_by_text("Stream URLs").click()
            # Each caller gets its own stream token (issued to its key): same URL, other token.
            base = re.escape(listed.partition("?")[0])
            rtsp_field = card.get_by_label("RTSP", exact=True)
            await expect(rtsp_field).to_have_value(re.compile(rf"^{base}\?token=cst1\."))
            rtsp = await rtsp_field.input_value()
            await expect(card.get_by_label("WHEP", exact=True)).to_have_value(
                re.compile(r"^http://127\.0\.0\.1:9/")
            )
            await card.get_by_role("button", name="Copy RTSP URL").click()
            await expect(p.locator("#notices")).to_contain_text("RTSP URL copied")
            assert await p.evaluate("navigator.clipboard.readText()") == rtsp

            await card.get_by_text("Live view").click()
            note = card.locator(".live-note")
            await expect(note).to_contain_text("Live video failed")
            await expect(note).to_contain_text("Showing MJPEG instead")
            await expect(card.locator(".live-status")).to_contain_text("Live MJPEG")
            await expect(card.locator("img.live-img")).to_have_js_property("naturalWidth", 320)
            await screenshot(p, tmp_path / "live-fallback.png")
            wrapped.assert_clean()
        finally:
            await p.context.close()


async def _camera_list(daemon: RunningDaemon) -> list[dict[str, Any]]:
    async with daemon.client("viewer") as rpc:
        result = await rpc.call("get_camera_list")
    cameras: list[dict[str, Any]] = result["cameras"]
    return cameras


async def test_files_pagination(daemon: RunningDaemon, page: BrowserPage) -> None:
    async with daemon.client("operator") as rpc:
        shot = await rpc.call("take_snapshot", {"device": "demo0"})
    directory = daemon.app.config.storage.snapshots_dir
    original = directory / shot["filename"]
    base = original.stat().st_mtime
    for n in range(24):  # 25 files: two pages of 20
        copy = directory / f"copy_{n:02d}.jpg"
        shutil.copyfile(original, copy)
        os.utime(copy, (base - 100 + n, base - 100 + n))
    p = page.page
    await sign_in(p, daemon.http_url, daemon.ws_url, daemon.keys["viewer"])
    await p.get_by_role("link", name="Files").click()
    await p.get_by_role("tab", name="Snapshots").click()
    rows = p.locator("#files-body tbody tr")
    await expect(p.locator("#page-info")).to_have_text("1–20 of 25")
    await expect(rows).to_have_count(20)
    await expect(rows.first).to_have_attribute("data-filename", shot["filename"])
    await expect(p.get_by_role("button", name="Previous")).to_be_disabled()
    await p.get_by_role("button", name="Next").click()
    await expect(p.locator("#page-info")).to_have_text("21–25 of 25")
    await expect(rows).to_have_count(5)
    await expect(rows.last).to_have_attribute("data-filename", "copy_00.jpg")
    await expect(p.get_by_role("button", name="Next")).to_be_disabled()
    await p.get_by_role("button", name="Previous").click()
    await expect(p.locator("#page-info")).to_have_text("1–20 of 25")
    page.assert_clean()


async def test_storage_critical_state_and_refused_snapshot(
    tmp_path: Path, page: BrowserPage
) -> None:
    # Thresholds under any real disk's usage: the storage is "critical" on this machine.
    tight = {**LAVFI_CAMERA, "storage": {"warn_percent": 0.01, "block_percent": 0.02}}
    async with running_daemon(tmp_path, tight) as daemon:
        p = page.page
        await sign_in(p, daemon.http_url, daemon.ws_url, daemon.keys["admin"])
        await camera_card(p, "demo0").get_by_role("button", name="Take snapshot").click()
        alert = p.locator("#alerts .notice").last
        await expect(alert).to_contain_text("Snapshot failed:")
        await expect(alert).to_contain_text("Free space:")
        await p.get_by_role("link", name="Files").click()
        storage = p.locator("#storage")
        await expect(storage).to_have_attribute("data-state", "critical")
        await expect(storage.get_by_role("alert")).to_contain_text("critically low")
        await expect(storage.get_by_role("meter")).to_have_attribute("aria-valuemax", "100")
        page.assert_clean()


@pytest.mark.parametrize(
    ("role", "can_operate", "can_delete"),
    [("viewer", False, False), ("operator", True, False), ("admin", True, True)],
)
async def test_controls_follow_the_role(
    daemon: RunningDaemon, page: BrowserPage, role: str, can_operate: bool, can_delete: bool
) -> None:
    async with daemon.client("operator") as rpc:
        await rpc.call("take_snapshot", {"device": "demo0"})
    p = page.page
    await sign_in(p, daemon.http_url, daemon.ws_url, daemon.keys[role])
    await expect(p.locator("#role-badge")).to_have_text(role)
    card = camera_card(p, "demo0")
    await expect(card.locator(".badge")).to_have_text("Connected")
    operate = [
        card.get_by_role("button", name="Take snapshot"),
        card.get_by_role("button", name="Start recording"),
        card.get_by_role("button", name="Timed recording…"),
    ]
    for control in operate:
        await expect(control).to_have_count(1 if can_operate else 0)
    await expect(p.get_by_role("link", name="System")).to_have_count(1 if can_delete else 0)

    await p.get_by_role("link", name="Files").click()
    await p.get_by_role("tab", name="Snapshots").click()
    row = p.locator("#files-body tbody tr").first
    await expect(row.get_by_role("link", name=re.compile("^Download"))).to_be_visible()
    await expect(row.get_by_role("button", name=re.compile("^Delete"))).to_have_count(
        1 if can_delete else 0
    )
    storage = expect(p.locator("#storage"))
    await (storage.to_be_visible() if can_delete else storage.to_be_hidden())
    # A viewer typing the admin page address still lands on the cameras view.
    if not can_delete:
        await p.goto(client_url(daemon.http_url, daemon.ws_url) + "#system")
        await expect(p.locator("#view-cameras")).to_be_visible()
        await expect(p.locator("#view-system")).to_be_hidden()
    page.assert_clean()


async def test_system_view_status_metrics_and_retention(
    daemon: RunningDaemon, page: BrowserPage, screenshot_dir: Path
) -> None:
    p = page.page
    await sign_in(p, daemon.http_url, daemon.ws_url, daemon.keys["admin"])
    await p.get_by_role("link", name="System").click()
    await expect(p.locator("#health-badge")).to_have_text(re.compile("HEALTHY|DEGRADED"))
    await expect(p.locator("#system-metrics")).to_contain_text("Requests")
    # API 1.1 shapes: component states are strings, storage and ffmpeg are components.
    await expect(p.locator('[data-component="storage"]')).to_contain_text("RUNNING")
    await expect(p.locator('[data-component="ffmpeg"]')).to_contain_text("RUNNING")
    await expect(p.locator('[data-component="mediamtx"]')).to_contain_text("STOPPED")
    await expect(p.locator("#system-status")).to_contain_text("fmp4, mp4, mkv, jpg, png")
    await expect(p.locator("#system-metrics")).to_contain_text("Disk (recordings)")
    # The form shows the stored policy: the default one is manual and disabled.
    await expect(p.get_by_label("Policy", exact=True)).to_have_value("manual")
    await expect(p.get_by_label("Enabled")).not_to_be_checked()
    await p.get_by_label("Policy", exact=True).select_option("age")
    await p.get_by_label("Maximum age (days)").fill("7")
    await p.get_by_label("Enabled").check()
    await p.get_by_role("button", name="Save policy").click()
    await expect(p.locator("#retention-status")).to_contain_text("saved")
    await p.get_by_role("button", name="Run cleanup now").click()
    await expect(p.locator("#retention-status")).to_contain_text("Cleanup done:")
    await screenshot(p, screenshot_dir / "system.png", full_page=True)
    page.assert_clean()


async def test_phone_width_has_no_horizontal_scroll(
    daemon: RunningDaemon, browser: Any, screenshot_dir: Path
) -> None:
    async with daemon.client("operator") as rpc:
        await rpc.call("take_snapshot", {"device": "demo0"})
    wrapped = await new_page(browser, width=375, height=740, is_mobile=True, has_touch=True)
    p = wrapped.page
    try:
        await sign_in(p, daemon.http_url, daemon.ws_url, daemon.keys["admin"])
        card = camera_card(p, "demo0")
        await card.get_by_role("button", name="Take snapshot").click()
        await expect(card.locator("figure.preview img")).to_have_js_property("naturalWidth", 320)
        assert await _overflowing(p, 375) == []
        await screenshot(p, screenshot_dir / "phone-cameras.png", full_page=True)
        await p.get_by_role("link", name="Files").click()
        await p.get_by_role("tab", name="Snapshots").click()
        await expect(p.locator("#files-body tbody tr").first).to_be_visible()
        assert await _overflowing(p, 375) == []
        await screenshot(p, screenshot_dir / "phone-files.png", full_page=True)
        wrapped.assert_clean()
    finally:
        await p.context.close()


async def _overflowing(p: Any, width: int) -> list[str]:
    """Elements that stick out past `width` (empty when the page needs no horizontal scroll)."""
    return list(
        await p.evaluate(
            """(width) => document.documentElement.scrollWidth <= width ? [] :
            [...document.querySelectorAll('body *')]
              .filter((el) => el.getBoundingClientRect().right > width + 0.5)
              .map((el) => `${el.tagName.toLowerCase()}#${el.id}.${el.className}`)""",
            width,
        )
    )


async def test_client_reconnects_after_a_daemon_restart(tmp_path: Path, page: BrowserPage) -> None:
    first = Application(make_config(tmp_path, LAVFI_CAMERA))
    await first.start()
    key, _ = first.keys.create("e2e-admin", Role.ADMIN)
    ws_port, http_port = first.ws.port, first.http.port
    ws_url = f"ws://127.0.0.1:{ws_port}/ws"
    http_url = f"http://127.0.0.1:{http_port}"
    second: Application | None = None
    try:
        p = page.page
        await sign_in(p, http_url, ws_url, key)
        await expect(camera_card(p, "demo0").locator(".badge")).to_have_text("Connected")

        await first.stop()
        await expect(p.locator("#conn-text")).to_contain_text("Reconnecting")
        await expect(p.get_by_role("button", name="Retry now")).to_be_visible()

        pinned = {**LAVFI_CAMERA, "server": {"port": ws_port}, "http": {"port": http_port}}
        second = Application(make_config(tmp_path, pinned))
        await second.start()
        # Re-authenticated and resubscribed by itself: the camera list is live again.
        await expect(p.locator("#conn-text")).to_have_text("Connected", timeout=30_000)
        await expect(p.locator("#notices")).to_contain_text("Reconnected")
        await expect(camera_card(p, "demo0").locator(".badge")).to_have_text("Connected")
        stats = await _subscription_topics(second)
        assert {"camera.*", "recording.*", "snapshot.taken", "system.*"} <= stats
        page.assert_clean()
    finally:
        if second is not None:
            await second.stop()
        elif first.listening.is_set():
            await first.stop()


async def _subscription_topics(app: Application) -> set[str]:
    topics: set[str] = set()
    for session in app.ws.sessions.values():
        if session.identity is not None:
            topics |= set(app.bus.topics_of(session.subscriber_id))
    return topics


def _discovery_seam() -> bool:
    params = inspect.signature(Application.__init__).parameters
    return "event_source" in params and "prober" in params


async def test_plugged_camera_appears_without_reload(tmp_path: Path, page: BrowserPage) -> None:
    if not _discovery_seam():
        pytest.skip("Application has no event_source/prober discovery seam yet")
    from tests.support.fake_devices import FakeEventSource, FakeProber, uvc_webcam

    prober = FakeProber()
    source = FakeEventSource(prober)
    app = Application(make_config(tmp_path, LAVFI_CAMERA), event_source=source, prober=prober)
    await app.start()
    try:
        key, _ = app.keys.create("e2e-viewer", Role.VIEWER)
        http_url = f"http://127.0.0.1:{app.http.port}"
        ws_url = f"ws://127.0.0.1:{app.ws.port}/ws"
        p = page.page
        await sign_in(p, http_url, ws_url, key)
        await expect(camera_card(p, "demo0")).to_be_visible()
        await expect(p.locator("article.camera")).to_have_count(1)

        capture, meta = uvc_webcam(4)
        source.plug(capture, meta)
        card = camera_card(p, "camera4")
        await expect(card.locator(".badge")).to_have_text("Connected")
        await expect(p.locator("article.camera")).to_have_count(2)  # metadata node skipped
        await expect(p.locator("#camera-summary")).to_have_text("2 of 2 cameras connected")

        source.unplug(capture.path, meta.path)
        await expect(card.locator(".badge")).to_have_text("Disconnected")
        await expect(p.locator("#camera-summary")).to_have_text("1 of 2 cameras connected")
        page.assert_clean()
    finally:
        await app.stop()


async def test_running_daemon_fixture_still_serves_client(tmp_path: Path, browser: Any) -> None:
    """The client is served with the strict CSP and no inline script or style."""
    async with running_daemon(tmp_path) as plain:
        wrapped = await new_page(browser)
        p = wrapped.page
        try:
            response = await p.goto(client_url(plain.http_url, plain.ws_url))
            assert response is not None
            csp = response.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "style-src 'self'" in csp
            html = await response.text()
            assert "<style" not in html and "style=" not in html
            assert re.search(r"<script(?![^>]*\bsrc=)", html) is None
            await expect(p.get_by_role("heading", name="Sign in")).to_be_visible()
            await expect(p.locator("#ws-url")).to_have_value(plain.ws_url)
            # A link cannot point the sign-in form at another host's WebSocket.
            await p.goto(client_url(plain.http_url, "ws://attacker.invalid:8002/ws"))
            await expect(p.get_by_role("heading", name="Sign in")).to_be_visible()
            await expect(p.locator("#ws-url")).to_have_value(re.compile(r"^ws://127\.0\.0\.1:"))
            wrapped.assert_clean()
        finally:
            await p.context.close()


async def test_system_view_shows_a_failing_component_and_why(tmp_path: Path, browser: Any) -> None:
    """API 1.1 get_status: the ffmpeg component is ERROR with its reason when the executable
    is missing, and the overall badge is UNHEALTHY."""
    overrides = {"ffmpeg": {"binary": "no-such-ffmpeg"}}
    async with running_daemon(tmp_path, overrides) as daemon:
        wrapped = await new_page(browser)
        p = wrapped.page
        try:
            await sign_in(p, daemon.http_url, daemon.ws_url, daemon.keys["admin"])
            await p.get_by_role("link", name="System").click()
            await expect(p.locator("#health-badge")).to_have_text("UNHEALTHY")
            ffmpeg = p.locator('[data-component="ffmpeg"]')
            await expect(ffmpeg).to_contain_text("ERROR")
            await expect(ffmpeg).to_contain_text("ffmpeg executable 'no-such-ffmpeg' not found")
            await expect(p.locator('[data-component="storage"]')).to_contain_text("RUNNING")
            wrapped.assert_clean()
        finally:
            await p.context.close()
