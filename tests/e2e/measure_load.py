"""Measure the browser client: time from navigation to the first rendered camera list
(the `cs:cameras-rendered` performance mark, ms since the navigation started) over N loads
of a signed-in tab, and the page weight (bytes of every client file, and what the browser
actually loaded).

    python -m tests.e2e.measure_load [--loads 10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from pathlib import Path
from typing import Any

from playwright.async_api import async_playwright, expect

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, LAVFI_CAMERA, client_url
from tests.support.daemon import running_daemon

CLIENT_DIR = Path(__file__).resolve().parents[2] / "client"

FIRST_LIST_MS = """() => {
  const mark = performance.getEntriesByName('cs:cameras-rendered')[0];
  return mark ? mark.startTime : null;
}"""

LOADED_BYTES = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const resources = performance.getEntriesByType('resource')
    .filter((r) => r.name.startsWith(location.origin));
  return (nav ? nav.decodedBodySize : 0) + resources.reduce((n, r) => n + r.decodedBodySize, 0);
}"""


async def measure(loads: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        async with running_daemon(Path(tmp), LAVFI_CAMERA) as daemon, async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            page = await browser.new_page()
            await page.goto(client_url(daemon.http_url, daemon.ws_url))
            await page.get_by_label("API key or JWT").fill(daemon.keys["admin"])
            await page.get_by_role("button", name="Sign in").click()
            card = page.locator('article.camera[data-device="demo0"]')
            await expect(card).to_be_visible()
            samples: list[float] = []
            loaded = 0
            for _ in range(loads):
                await page.reload()
                await expect(card).to_be_visible()
                samples.append(float(await page.evaluate(FIRST_LIST_MS)))
                loaded = int(await page.evaluate(LOADED_BYTES))
            await browser.close()
    files = {f.name: f.stat().st_size for f in sorted(CLIENT_DIR.rglob("*")) if f.is_file()}
    return {
        "loads": loads,
        "first_camera_list_ms": {
            "p50": round(statistics.median(samples), 1),
            "min": round(min(samples), 1),
            "max": round(max(samples), 1),
        },
        "page_weight_bytes": sum(files.values()),
        "loaded_bytes": loaded,
        "files": files,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--loads", type=int, default=10)
    result = asyncio.run(measure(parser.parse_args().loads))
    timing = result["first_camera_list_ms"]
    print(
        f"first camera list rendered over {result['loads']} loads: p50 {timing['p50']} ms "
        f"(min {timing['min']}, max {timing['max']})"
    )
    print(
        f"page weight: {result['page_weight_bytes']} bytes in client/ "
        f"({result['loaded_bytes']} bytes loaded by the browser, uncompressed)"
    )
    for name, size in result["files"].items():
        print(f"  {name:<12} {size:>7}")


if __name__ == "__main__":
    main()
