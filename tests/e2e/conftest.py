"""Browser end-to-end fixtures: Debian's Chromium driven by Playwright (async API), talking
to an in-process daemon with a lavfi test-pattern camera.

Screenshots go to ``tmp_path`` unless ``CS_SCREENSHOTS`` names a directory (for example
``docs/images``)."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.support.daemon import RunningDaemon, running_daemon

playwright_api = pytest.importorskip("playwright.async_api")
async_playwright = playwright_api.async_playwright
expect = playwright_api.expect

CHROMIUM = os.environ.get("CS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAVFI_CAMERA = {
    "cameras": {
        "sources": [
            {
                "id": "demo0",
                "name": "Test pattern",
                "input_format": "lavfi",
                "input": "testsrc2=size=320x240:rate=10",
                "exclusive": True,
            }
        ]
    }
}

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} missing (apt-get install -y chromium)", allow_module_level=True)

expect.set_options(timeout=15_000)


def client_url(http_url: str, ws_url: str, path: str = "/") -> str:
    return f"{http_url}{path}?ws={quote(ws_url, safe='')}"


@dataclass
class BrowserPage:
    """A page plus what the browser reported: console errors and CSP violations."""

    page: Any
    console_errors: list[str] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        errors = self.console_errors
        # The optional /client-config.json (WebSocket address) may not be served: its 404 is
        # expected; any other failed load is not.
        if self.not_found and all(u.endswith("/client-config.json") for u in self.not_found):
            errors = [e for e in errors if "404" not in e]
        assert not errors, (errors, self.not_found)


@pytest.fixture
def screenshot_dir(tmp_path: Path) -> Path:
    target = os.environ.get("CS_SCREENSHOTS")
    path = Path(target) if target else tmp_path / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with async_playwright() as pw:
        instance = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield instance
        finally:
            await instance.close()


async def new_page(
    browser: Any, *, width: int = 1280, height: int = 860, **kwargs: Any
) -> BrowserPage:
    context = await browser.new_context(
        viewport={"width": width, "height": height}, accept_downloads=True, **kwargs
    )
    page = await context.new_page()
    wrapped = BrowserPage(page)

    def on_console(message: Any) -> None:
        if message.type == "error":
            wrapped.console_errors.append(message.text)

    def on_response(response: Any) -> None:
        if response.status == 404:
            wrapped.not_found.append(response.url.split("?")[0])

    page.on("console", on_console)
    page.on("response", on_response)
    page.on("pageerror", lambda exc: wrapped.console_errors.append(f"pageerror: {exc}"))
    return wrapped


@pytest.fixture
async def page(browser: Any) -> AsyncIterator[BrowserPage]:
    wrapped = await new_page(browser)
    try:
        yield wrapped
    finally:
        await wrapped.page.context.close()


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[RunningDaemon]:
    async with running_daemon(tmp_path, LAVFI_CAMERA) as running:
        yield running


async def sign_in(page: Any, daemon_http: str, ws_url: str, key: str) -> None:
    """Open the client and sign in; returns once the connection is up."""
    await page.goto(client_url(daemon_http, ws_url))
    await page.get_by_label("API key or JWT").fill(key)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#conn-text")).to_have_text("Connected")


def ffprobe_json(path: Path) -> dict[str, Any]:
    import json
    import subprocess

    ffprobe = shutil.which("ffprobe")
    assert ffprobe, "ffprobe missing"
    out = subprocess.run(
        [
            ffprobe,
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    data: dict[str, Any] = json.loads(out.stdout)
    return data
