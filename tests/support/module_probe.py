"""Which modules a started daemon has imported: builds the application from a config file
(YAML), starts it on the configured (free) ports, optionally calls some JSON-RPC methods
over a real WebSocket, then prints the sorted ``sys.modules`` names and RSS as JSON and
stops. Runs in its own interpreter so the test process's imports do not count:

    python -m tests.support.module_probe config.yaml [--auth key|jwt] \
        [--call METHOD[:JSON_PARAMS]] ...

With calls, the probe authenticates first (an admin API key, or a JWT issued after the
start-up modules were listed) and reports every answer and its round-trip time, the authenticate one first.

Used by tests/integration/test_lazy_imports.py."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

CALL_TIMEOUT_S = 30.0


def _parse_call(text: str) -> tuple[str, dict[str, Any]]:
    name, _, params = text.partition(":")
    return name, json.loads(params) if params else {}


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def _call_all(
    port: int, key: str, calls: list[tuple[str, dict[str, Any]]], call_ms: list[float]
) -> list[Any]:
    import websockets

    answers: list[Any] = []
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws", open_timeout=CALL_TIMEOUT_S) as ws:
        requests = [("authenticate", {"auth_token": key}), *calls]
        for number, (method, params) in enumerate(requests, 1):
            message = {"jsonrpc": "2.0", "id": number, "method": method, "params": params}
            started = time.perf_counter()
            await ws.send(json.dumps(message))
            while True:
                reply = json.loads(await asyncio.wait_for(ws.recv(), CALL_TIMEOUT_S))
                if reply.get("id") == number:
                    break
            call_ms.append(round((time.perf_counter() - started) * 1000, 3))
            answers.append(reply)
    return answers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--auth", choices=("key", "jwt"), default="key")
    parser.add_argument("--call", action="append", default=[], type=_parse_call)
    args = parser.parse_args(argv)

    from camera_service import eventloop
    from camera_service.app import Application
    from camera_service.auth.roles import Role
    from camera_service.config import load_config

    config, path = load_config(args.config)
    report: dict[str, Any] = {}

    async def run() -> None:
        app = Application(config, path)
        key = app.keys.create("probe", Role.ADMIN)[0]
        await app.start()
        try:
            report["started_modules"] = sorted(sys.modules)
            report["started_rss_mb"] = round(_rss_mb(), 2)
            if args.auth == "jwt":
                key = app.jwt.issue("probe", Role.ADMIN, 600)
            call_ms: list[float] = []
            calls = await _call_all(app.ws.port, key, args.call, call_ms) if args.call else []
            report["answers"], report["call_ms"] = calls, call_ms
            report["modules"] = sorted(sys.modules)
        finally:
            await asyncio.wait_for(app.stop(), CALL_TIMEOUT_S)

    eventloop.run(run(), config.server.event_loop)
    json.dump(report, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
