"""`camera-service demo` as a real subprocess, driven from the browser with the key and URLs
its banner prints; plus the client's page weight budget."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import BrowserPage, client_url, expect

pytestmark = pytest.mark.slow

CLIENT_DIR = Path(__file__).resolve().parents[2] / "client"
PAGE_WEIGHT_BUDGET = 200 * 1024


@dataclass
class Demo:
    http_url: str
    ws_url: str
    admin_key: str


async def _read_banner(proc: asyncio.subprocess.Process) -> Demo:
    assert proc.stdout is not None
    seen: dict[str, str] = {}
    lines: list[str] = []
    while "key" not in seen or "http" not in seen or "ws" not in seen:
        raw = await proc.stdout.readline()
        if not raw:
            raise RuntimeError("demo exited before printing its banner:\n" + "".join(lines))
        line = raw.decode()
        lines.append(line)
        if match := re.search(r"browser client\s*:\s*(http://\S+?)/?$", line):
            seen["http"] = match.group(1)
        elif match := re.search(r"JSON-RPC\s*:\s*(ws://\S+)", line):
            seen["ws"] = match.group(1)
        elif match := re.search(r"admin API key\s*:\s*(\S+)", line):
            seen["key"] = match.group(1)
    return Demo(seen["http"], seen["ws"], seen["key"])


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[Demo]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "camera_service",
        "demo",
        "--dir",
        str(tmp_path),
        "--ws-port",
        "0",
        "--http-port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    drain: asyncio.Task[None] | None = None
    try:
        started = await asyncio.wait_for(_read_banner(proc), 30)

        async def keep_reading() -> None:
            assert proc.stdout is not None
            while await proc.stdout.readline():
                pass

        drain = asyncio.create_task(keep_reading())
        yield started
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if drain is not None:
            await drain


async def test_demo_subprocess_through_the_browser(demo: Demo, page: BrowserPage) -> None:
    p = page.page
    await p.goto(client_url(demo.http_url, demo.ws_url))
    await p.get_by_label("API key or JWT").fill(demo.admin_key)
    await p.get_by_role("button", name="Sign in").click()
    await expect(p.locator("#conn-text")).to_have_text("Connected")
    card = p.locator('article.camera[data-device="demo0"]')
    await expect(card.get_by_role("heading", name="Demo test pattern")).to_be_visible()
    await expect(card.locator(".badge")).to_have_text("Connected")
    await card.get_by_role("button", name="Take snapshot").click()
    await expect(card.locator("figure.preview img")).to_have_js_property("naturalWidth", 640)
    # The session survives a page reload (sessionStorage) without asking again.
    await p.reload()
    await expect(p.locator("#conn-text")).to_have_text("Connected")
    await expect(card.locator(".badge")).to_have_text("Connected")
    page.assert_clean()


def test_page_weight_is_under_budget() -> None:
    """What a first visit loads stays under budget. `client/vendor/` (hls.js) is loaded only
    when a browser without native HLS falls back to HLS, so it is not part of the page."""
    vendor = CLIENT_DIR / "vendor"
    files = [f for f in CLIENT_DIR.rglob("*") if f.is_file() and vendor not in f.parents]
    total = sum(f.stat().st_size for f in files)
    assert {"index.html", "app.js", "styles.css"} <= {f.name for f in files}
    assert total < PAGE_WEIGHT_BUDGET, f"client is {total} bytes"
    # ...and nothing of the page pulls vendor/ in up front.
    for page_file in files:
        if page_file.suffix in (".html", ".css"):
            assert "vendor/" not in page_file.read_text(), page_file.name
        elif page_file.suffix == ".js":
            for line in page_file.read_text().splitlines():
                assert not (line.startswith("import") and "vendor/" in line), page_file.name
