"""Stream access control: what MediaMTX's per-session auth call costs, and what it adds to
starting a stream.

1. Auth call latency. The daemon (in-process, 127.0.0.1, ephemeral ports) answers
   ``POST /mediamtx/auth`` the way MediaMTX calls it: one new TCP connection per request
   (MediaMTX builds a fresh ``http.Transport`` for every call), JSON body as in
   ``internal/auth/manager.go``. Interleaved in ``--blocks`` blocks of ``--calls`` requests
   per kind: a bare aiohttp handler answering 200 at once on its own server in the same
   process (baseline: HTTP + connection cost), and the daemon with a viewer JWT, an API key
   (key file re-checked in a thread), a stream token, the daemon's publisher credential and an
   anonymous request (denied). Reports p50/p99 per kind and the added latency over the
   baseline (target p99 < 5 ms); plus the pure decision alone (µs per call).
2. get_stream_url → first frame, auth on vs off (needs ``mediamtx``, ``ffmpeg`` on PATH,
   else skipped with the reason). Two stacks side by side (daemon + real MediaMTX each,
   tests/support/stream_auth_stack.py), one with ``mediamtx.stream_auth`` on (MediaMTX
   ``authMethod: http``), one off (MediaMTX's default). The camera is streamed always-on
   (``start_streaming``) in both; each round calls ``get_stream_url`` over the WebSocket API
   and runs ``ffmpeg -i <rtsp url> -frames:v 1`` until it exits, rounds interleaved on/off.

    python -m bench.stream_auth                  # ~40 s
    python -m bench.stream_auth --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import platform
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from bench.common import add_json_option, format_table, latency_summary_ms, publish
from camera_service.auth.roles import Role
from camera_service.auth.stream_access import AccessRequest
from tests.support.daemon import running_daemon
from tests.support.fake_mediamtx_auth import Credentials, MediaMTXAuthCaller
from tests.support.stream_auth_stack import have_real_mediamtx, run, stream_auth_stack

TARGET_P99_MS = 5.0
KEYFRAME_INTERVAL_S = 2.0
KINDS = ("bare", "jwt", "api_key", "stream_token", "publisher", "anonymous")


def daemon_overrides() -> dict[str, Any]:
    return {
        "mediamtx": {"enabled": True, "api_url": "http://127.0.0.1:9", "stream_auth": True},
        "cameras": {"sources": [{"id": "cam0", "input_format": "lavfi", "input": "testsrc2"}]},
        "auth": {"failed_auth_limit": 10000},
        "logging": {"level": "ERROR"},
    }


async def bare_server() -> tuple[web.AppRunner, str]:
    async def ok(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/mediamtx/auth", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/mediamtx/auth"


CLIENT_CODE = """
import http.client, json, sys, time
from urllib.parse import urlsplit
job = json.load(sys.stdin)
url = urlsplit(job["url"])
body = json.dumps(job["body"]).encode()
headers = {"Content-Type": "application/json"}
samples = []
for _ in range(job["calls"]):
    start = time.perf_counter_ns()
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)  # new per call
    conn.request("POST", url.path, body, headers)
    resp = conn.getresponse()
    resp.read()
    conn.close()
    samples.append(time.perf_counter_ns() - start)
    if resp.status != job["expect"]:
        sys.exit(f"HTTP {resp.status}")
json.dump(samples, sys.stdout)
"""


async def client_run(url: str, body: dict[str, Any], calls: int, expect: int) -> list[int]:
    """Requests from another process (as MediaMTX is): one new connection per call."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLIENT_CODE,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    job = {"url": url, "body": body, "calls": calls, "expect": expect}
    out, _ = await asyncio.wait_for(proc.communicate(json.dumps(job).encode()), 120)
    if proc.returncode != 0:
        raise RuntimeError(f"auth client failed ({proc.returncode})")
    return [int(v) for v in json.loads(out)]


async def auth_latency(calls: int, blocks: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        async with running_daemon(Path(tmp), daemon_overrides()) as daemon:
            app = daemon.app
            endpoint = app.stream_auth
            assert endpoint is not None
            logging.getLogger().setLevel(logging.ERROR)
            runner, bare_url = await bare_server()
            url = f"{daemon.http_url}/mediamtx/auth"
            caller = MediaMTXAuthCaller(url)
            key = daemon.keys["viewer"]
            jwt = app.jwt.issue("bench", Role.VIEWER, 3600)
            token = app.stream_tokens.issue("cam0", time.time())
            pub = app.mtx_credentials.publisher
            read = {"action": "read", "path": "cam0", "protocol": "rtsp"}
            bodies = {
                "bare": caller.body(**read, creds=Credentials("u", jwt)),
                "jwt": caller.body(**read, creds=Credentials("u", jwt)),
                "api_key": caller.body(**read, creds=Credentials("u", key)),
                "stream_token": caller.body(**read, query=f"token={token}"),
                "publisher": caller.body(
                    action="publish",
                    path="cam0",
                    protocol="rtsp",
                    creds=Credentials(pub.user, pub.password),
                ),
                "anonymous": caller.body(**read),
            }
            samples: dict[str, list[int]] = {k: [] for k in KINDS}
            handler: dict[str, list[int]] = {k: [] for k in KINDS if k != "bare"}
            for _ in range(blocks):
                for kind in KINDS:
                    target = bare_url if kind == "bare" else url
                    expect = 401 if kind == "anonymous" else 200
                    endpoint.recent.clear()
                    samples[kind] += await client_run(target, bodies[kind], calls, expect)
                    if kind != "bare":
                        handler[kind] += [int(s * 1e9) for s in endpoint.recent]
            await runner.cleanup()
            decide_us = pure_decision_us(endpoint.policy, bodies["jwt"], 20000)
    summary = {k: latency_summary_ms(v) for k, v in samples.items()}
    inside = {k: latency_summary_ms(v) for k, v in handler.items()}
    base = summary["bare"]
    added = {
        k: {q: round(summary[k][q] - base[q], 3) for q in ("p50_ms", "p99_ms")}
        for k in KINDS
        if k != "bare"
    }
    worst_p99 = max(summary[k]["p99_ms"] for k in KINDS if k != "bare")
    worst_inside = max(v["p99_ms"] for v in inside.values())
    return {
        "calls_per_kind": calls * blocks,
        "latency_ms": summary,
        "added_over_bare_ms": added,
        "handler_ms": inside,
        "worst_p99_ms": worst_p99,
        "worst_handler_p99_ms": worst_inside,
        "target_p99_ms": TARGET_P99_MS,
        "meets_target": worst_p99 < TARGET_P99_MS,
        "pure_decision_us": decide_us,
    }


def pure_decision_us(policy: Any, body: dict[str, Any], count: int) -> float:
    request = AccessRequest.from_body(body)
    now = time.time()
    start = time.perf_counter()
    for _ in range(count):
        policy.decide(request, now)
    return round((time.perf_counter() - start) / count * 1e6, 2)


async def first_frame(rounds: int) -> dict[str, Any]:
    if rounds == 0:
        return {"skipped": "--rounds 0"}
    if not have_real_mediamtx():
        return {"skipped": "mediamtx, ffmpeg or ffprobe not found on PATH"}
    times: dict[str, list[int]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory() as tmp_on, tempfile.TemporaryDirectory() as tmp_off:
        async with (
            stream_auth_stack(Path(tmp_on), extra={"logging": {"level": "ERROR"}}) as on,
            stream_auth_stack(
                Path(tmp_off), stream_auth=False, extra={"logging": {"level": "ERROR"}}
            ) as off,
        ):
            stacks = {"on": on, "off": off}
            async with contextlib.AsyncExitStack() as exits:
                clients = {}
                for mode, stack in stacks.items():
                    clients[mode] = await exits.enter_async_context(stack.daemon.client("viewer"))
                    async with stack.daemon.client("operator") as operator:
                        await operator.call("start_streaming", {"device": "cam0"})
                for _ in range(rounds):
                    for mode in ("on", "off"):
                        # A random start within one key-frame interval (2 s): without it the
                        # rounds lock onto the publishers' key-frame phase and the wait for
                        # the first key frame, not the auth, decides the comparison.
                        await asyncio.sleep(random.uniform(0.0, KEYFRAME_INTERVAL_S))
                        start = time.perf_counter_ns()
                        result = await clients[mode].call("get_stream_url", {"device": "cam0"})
                        code, out = await run(
                            "ffmpeg", "-v", "error", "-rtsp_transport", "tcp",
                            "-i", result["stream_url"], "-frames:v", "1", "-f", "null", "-",
                            timeout=30,
                        )  # fmt: skip
                        if code != 0:
                            raise RuntimeError(f"auth {mode}: ffmpeg failed: {out}")
                        times[mode].append(time.perf_counter_ns() - start)
    on_ms, off_ms = latency_summary_ms(times["on"]), latency_summary_ms(times["off"])
    return {
        "rounds": rounds,
        "auth_on_ms": on_ms,
        "auth_off_ms": off_ms,
        "ratio_p50_on_off": round(on_ms["p50_ms"] / off_ms["p50_ms"], 3)
        if off_ms["p50_ms"]
        else None,
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    result = {
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "mediamtx": shutil.which("mediamtx"),
        "auth_call": await auth_latency(args.calls, args.blocks),
        "first_frame": await first_frame(args.rounds),
    }
    return result


def table(result: dict[str, Any]) -> str:
    auth = result["auth_call"]
    rows = []
    for kind, s in auth["latency_ms"].items():
        inside = auth["handler_ms"].get(kind)
        rows.append([
            kind, f"{s['p50_ms']:.3f}", f"{s['p99_ms']:.3f}",
            "" if kind == "bare" else f"{auth['added_over_bare_ms'][kind]['p99_ms']:+.3f}",
            "" if inside is None else f"{inside['p50_ms']:.3f} / {inside['p99_ms']:.3f}",
        ])  # fmt: skip
    headers = ["auth call", "p50 ms", "p99 ms", "added p99 ms", "handler p50 / p99 ms"]
    text = format_table(headers, rows)
    text += (
        f"\nworst p99 {auth['worst_p99_ms']:.3f} ms (target < {TARGET_P99_MS} ms: "
        f"{'met' if auth['meets_target'] else 'MISSED'}); pure decision "
        f"{auth['pure_decision_us']} µs\n"
    )
    frame = result["first_frame"]
    if "skipped" in frame:
        return text + f"first frame: skipped ({frame['skipped']})\n"
    rows = [
        [mode, f"{frame[key]['p50_ms']:.1f}", f"{frame[key]['max_ms']:.1f}"]
        for mode, key in (("auth on", "auth_on_ms"), ("auth off", "auth_off_ms"))
    ]
    text += format_table(["get_stream_url → first frame", "p50 ms", "max ms"], rows)
    return text + f"\nratio p50 on/off {frame['ratio_p50_on_off']}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="requests per kind per block")
    parser.add_argument("--blocks", type=int, default=5, help="interleaved blocks")
    parser.add_argument("--rounds", type=int, default=10, help="first-frame rounds per mode")
    add_json_option(parser)
    args = parser.parse_args(argv)
    result = asyncio.run(main_async(args))
    publish(result, table(result), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
