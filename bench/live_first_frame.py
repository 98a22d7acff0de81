"""Live view: click-to-first-frame in the browser client, WebRTC and HLS, on demand and always on.

A real MediaMTX (``mediamtx`` on PATH; every listener on a free 127.0.0.1 port), the daemon
in-process with one lavfi camera (``testsrc2=size=640x480:rate=15``) and Debian's Chromium
driven by Playwright. Each trial clicks "Live view" on the camera card and takes the time
from the click (a capture-phase listener in the page) to the first decoded video frame
(``requestVideoFrameCallback`` of the client's ``<video>``); then it closes the view.

* WebRTC: the client POSTs to the WHEP endpoint. HLS: the same client against a MediaMTX
  with its WebRTC server off, so the WHEP POST is refused at once and the client falls back
  to hls.js (that refused POST is part of the figure, as for a user).
* on demand: nothing publishes the camera before the click (MediaMTX starts the FFmpeg
  publisher for the first reader); each trial waits until MediaMTX has stopped the
  publisher again (``on_demand_close_after`` = 1 s) before the next click.
* always on: ``start_streaming`` first (the daemon holds a reader), so the stream is up;
  each trial starts at a random point of the 2 s key-frame interval.

Baseline in the same run: FFmpeg reading the RTSP stream (spawn → first decoded frame:
``ffmpeg -frames:v 1``), on demand and always on, the floor MediaMTX and the encoder set.
Reported: p50/max per case and the ratio of each p50 to the FFmpeg floor of the same state.

    python -m bench.live_first_frame                 # 5 trials per case, ~2 min
    python -m bench.live_first_frame --trials 1 --json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bench.common import add_json_option, format_table, median, positive_int, publish
from camera_service.mediamtx.client import MediaMTXClient
from tests.support.daemon import RunningDaemon, running_daemon
from tests.support.real_mediamtx import RealMediaMTX

CHROMIUM = os.environ.get("CS_CHROMIUM", "/usr/bin/chromium")
CAMERA = "live0"
FRAME_TIMEOUT_S = 30.0
CLOSE_AFTER_S = 1.0
KEYFRAME_INTERVAL_S = 2.0  # the publisher forces one every 2 s (mediamtx/publisher.py)

INSTRUMENT = """() => {
  window.__clicks = [];
  window.__frames = [];
  document.addEventListener('click', () => window.__clicks.push(performance.now()), true);
  new MutationObserver(() => {
    const video = document.querySelector('video.live-video');
    if (video && !video.__watched) {
      video.__watched = true;
      video.requestVideoFrameCallback((now) => window.__frames.push(now));
    }
  }).observe(document.body, { childList: true, subtree: true });
}"""


def overrides(server: RealMediaMTX) -> dict[str, Any]:
    return {
        "cameras": {
            "sources": [
                {
                    "id": CAMERA,
                    "input_format": "lavfi",
                    "input": "testsrc2=size=640x480:rate=15",
                }
            ]
        },
        "mediamtx": {
            "enabled": True,
            "api_url": server.api_url,
            "public_host": "127.0.0.1",
            "rtsp_port": server.ports.rtsp,
            "hls_port": server.ports.hls,
            "webrtc_port": server.ports.webrtc,
            "on_demand_close_after": CLOSE_AFTER_S,
            "health_interval": 1.0,
            # This MediaMTX keeps its own (internal) authentication: no stream tokens.
            "stream_auth": False,
        },
        "logging": {"level": "WARNING", "format": "json"},
    }


@contextlib.asynccontextmanager
async def stack(tmp: Path, *, webrtc: bool) -> AsyncIterator[tuple[RealMediaMTX, RunningDaemon]]:
    work = tmp / ("mtx-webrtc" if webrtc else "mtx-hls")
    work.mkdir()
    # MediaMTX keeps an HLS muxer (a reader) hlsMuxerCloseAfter after the last request
    # (60 s by default): shortened so on-demand trials do not wait a minute each, but longer
    # than the publisher needs to start (else the muxer gives up before the stream is up).
    server = RealMediaMTX(work, hls=True, webrtc=webrtc, hlsMuxerCloseAfter="3s")
    async with server, running_daemon(tmp / work.name, overrides(server)) as daemon:
        await asyncio.wait_for(daemon.app.mediamtx.reconciled.wait(), FRAME_TIMEOUT_S)
        yield server, daemon


async def wait_unpublished(server: RealMediaMTX) -> None:
    """Until MediaMTX stopped the on-demand publisher (the path is not ready)."""
    async with MediaMTXClient(server.api_url) as client, asyncio.timeout(FRAME_TIMEOUT_S):
        while True:
            if not (await client.get_path(CAMERA)).is_ready:
                return
            await asyncio.sleep(0.1)  # polling MediaMTX's API: it pushes no event


async def random_phase() -> None:
    """A random start within one key-frame interval. A reader joining a running stream waits
    for the next key frame; each trial ends on a frame, so without this the trials lock onto
    the key-frame phase and all measure the worst case (a deliberate random delay, not a
    synchronisation)."""
    await asyncio.sleep(random.uniform(0.0, KEYFRAME_INTERVAL_S))


async def browser_trial(page: Any) -> float:
    """Click "Live view", return click → first frame (ms), close the view."""
    card = page.locator(f'article.camera[data-device="{CAMERA}"]')
    await page.evaluate("() => { window.__clicks = []; window.__frames = []; }")
    await card.get_by_text("Live view").click()
    try:
        await page.wait_for_function(
            "() => window.__frames.length > 0", timeout=FRAME_TIMEOUT_S * 1000
        )
    except Exception as exc:
        shown = await card.locator(".live-note, .live-status").all_text_contents()
        raise RuntimeError(f"no video frame within {FRAME_TIMEOUT_S:g} s: {shown}") from exc
    clicks, frames = await page.evaluate("() => [window.__clicks, window.__frames]")
    await card.get_by_text("Live view").click()  # close: the client drops its reader
    return float(frames[0] - clicks[0])


async def ffmpeg_first_frame(url: str) -> float:
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp",
        "-i", url, "-frames:v", "1", "-f", "null", "-",
    )  # fmt: skip
    code = await asyncio.wait_for(proc.wait(), FRAME_TIMEOUT_S)
    if code != 0:
        raise RuntimeError(f"ffmpeg could not read {url} (exit {code})")
    return (time.perf_counter() - started) * 1000


async def run_case(
    tmp: Path, browser: Any, *, webrtc: bool, trials: int
) -> dict[str, dict[str, list[float]]]:
    from tests.e2e.conftest import client_url

    out: dict[str, dict[str, list[float]]] = {}
    async with stack(tmp, webrtc=webrtc) as (server, daemon):
        context = await browser.new_context(viewport={"width": 1280, "height": 860})
        page = await context.new_page()
        await page.goto(client_url(daemon.http_url, daemon.ws_url))
        await page.get_by_label("API key or JWT").fill(daemon.keys["operator"])
        await page.get_by_role("button", name="Sign in").click()
        await page.locator("#conn-text", has_text="Connected").wait_for()
        await page.evaluate(INSTRUMENT)
        rtsp = f"rtsp://127.0.0.1:{server.ports.rtsp}/{CAMERA}"
        for mode in ("on_demand", "always_on"):
            if mode == "always_on":
                async with daemon.client("operator") as rpc:
                    await rpc.call("start_streaming", {"device": CAMERA})
            browser_ms, ffmpeg_ms = [], []
            for _ in range(trials):
                if mode == "on_demand":
                    await wait_unpublished(server)
                else:
                    await random_phase()
                browser_ms.append(await browser_trial(page))
                if mode == "on_demand":
                    await wait_unpublished(server)
                else:
                    await random_phase()
                ffmpeg_ms.append(await ffmpeg_first_frame(rtsp))
            out[mode] = {"browser": browser_ms, "ffmpeg": ffmpeg_ms}
        await context.close()
    return out


async def main(args: argparse.Namespace) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp_name:
        tmp = Path(tmp_name)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
            )
            try:
                results = {
                    "webrtc": await run_case(tmp, browser, webrtc=True, trials=args.trials),
                    "hls": await run_case(tmp, browser, webrtc=False, trials=args.trials),
                }
            finally:
                await browser.close()
    report: dict[str, Any] = {"trials": args.trials, "camera": "testsrc2 640x480@15", "cases": {}}
    for kind, modes in results.items():
        for mode, figures in modes.items():
            floor = median(figures["ffmpeg"])
            p50 = median(figures["browser"])
            report["cases"][f"{kind}/{mode}"] = {
                "p50_ms": round(p50, 1),
                "max_ms": round(max(figures["browser"]), 1),
                "ffmpeg_p50_ms": round(floor, 1),
                "ratio_to_ffmpeg": round(p50 / floor, 2) if floor else None,
                "samples_ms": [round(v, 1) for v in figures["browser"]],
            }
    return report


def table(report: dict[str, Any]) -> str:
    rows = [
        [
            case,
            f"{f['p50_ms']:.0f}",
            f"{f['max_ms']:.0f}",
            f"{f['ffmpeg_p50_ms']:.0f}",
            f"{f['ratio_to_ffmpeg']:.2f}",
        ]
        for case, f in report["cases"].items()
    ]
    headers = ["case", "click→frame p50 ms", "max ms", "ffmpeg RTSP p50 ms", "ratio"]
    return format_table(headers, rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=positive_int, default=5, help="clicks per case")
    add_json_option(parser)
    return parser.parse_args(argv)


def cli(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = [b for b in ("mediamtx", "ffmpeg") if shutil.which(b) is None]
    if missing or not Path(CHROMIUM).exists():
        print(f"needs {', '.join(missing) or CHROMIUM} (mediamtx on PATH)", file=sys.stderr)
        return 2
    report = asyncio.run(main(args))
    publish(report, table(report), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(cli())
