"""MediaMTX recovery: how fast paths come back after an outage, and what an outage costs
unrelated RPC calls.

One process runs the daemon (an in-process `camera_service.app.Application` with the MediaMTX
service wired as app.py wires it) and the OpenAPI-validating fake MediaMTX of the tests, on
127.0.0.1 with ephemeral ports.

1. Recovery. `--cameras` configured lavfi cameras get their paths. Each round stops the fake
   for `--outage` seconds (the monitor backs off, up to `mediamtx.backoff_max`), restarts it
   empty (`start(reset=True)`, like a MediaMTX restart that lost every API-made path) and
   times from the restart until the fake holds every camera's path again, split into
   detection (restart → the daemon's `system_status_update` "healthy") and reconcile.
   The backoff cap is set small (`--backoff-max`, default 0.5 s) so the figure shows the
   recovery work rather than the configured cap: with the default cap (10 s) detection alone
   can take up to 10 s.
2. Outage cost. `ping` latency over one WebSocket connection, sequential calls, in three
   conditions interleaved in `--blocks` blocks of `--pings` calls: MediaMTX up, MediaMTX down
   (connection refused, the monitor on backoff), MediaMTX hanging (accepts and never
   answers, so every probe runs into its timeout). Plus the wall time of one failing probe.

    python -m bench.mediamtx_recovery                 # ~30 s
    python -m bench.mediamtx_recovery --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import platform
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import add_json_option, format_table, latency_summary_ms, publish
from camera_service.app import Application
from camera_service.client import CameraClient
from camera_service.config import build_config
from camera_service.events import Event
from camera_service.mediamtx.service import MediaMTXService
from tests.support.fake_mediamtx import FakeMediaMTX

HOST = "127.0.0.1"
TARGET_RECOVERY_S = 5.0
WAIT_S = 30.0


def daemon_config(tmp: Path, fake: FakeMediaMTX, cameras: int, backoff_max: float) -> Any:
    sources = [
        {"id": f"cam{i}", "input_format": "lavfi", "input": "testsrc2=size=320x240:rate=10"}
        for i in range(cameras)
    ]
    return build_config(
        {
            "server": {"host": HOST, "port": 0, "rate_limit": {"enabled": False}},
            "http": {"host": HOST, "port": 0},
            "storage": {
                "recordings_dir": str(tmp / "recordings"),
                "snapshots_dir": str(tmp / "snapshots"),
                "state_dir": str(tmp / "state"),
            },
            "cameras": {"discovery": "off", "sources": sources},
            "mediamtx": {
                "enabled": True,
                "api_url": fake.url,
                "health_interval": 1.0,
                "backoff_base": 0.05,
                "backoff_max": backoff_max,
                "request_timeout": 1.0,
            },
            "logging": {"level": "ERROR", "format": "json"},
        }
    )


@dataclass
class Daemon:
    app: Application
    service: MediaMTXService
    fake: FakeMediaMTX
    health: list[tuple[float, str]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def on_event(self, event: Event) -> None:
        if event.topic == "system.health":
            self.health.append((time.perf_counter(), str(event.params.get("status"))))
            self.changed.set()

    async def wait_health(self, status: str) -> float:
        """perf_counter time of the next health event with ``status``."""
        seen = len(self.health)
        async with asyncio.timeout(WAIT_S):
            while True:
                for when, what in self.health[seen:]:
                    if what == status:
                        return when
                self.changed.clear()
                await self.changed.wait()

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.app.ws.port}{self.app.config.server.path}"


@contextlib.asynccontextmanager
async def running(cameras: int, backoff_max: float) -> AsyncIterator[Daemon]:
    with tempfile.TemporaryDirectory(prefix="bench-mediamtx-") as tmp:
        async with FakeMediaMTX() as fake:
            app = Application(daemon_config(Path(tmp), fake, cameras, backoff_max))
            wired = getattr(app, "mediamtx", None)
            service = wired if isinstance(wired, MediaMTXService) else None
            if service is None:  # app.py without the MediaMTX wiring yet
                service = MediaMTXService.from_config(app.config, app.cameras, app.bus)
            daemon = Daemon(app, service, fake)
            app.bus.add_listener(daemon.on_event)
            await app.start()
            if wired is None:
                await service.start()
            try:
                names = {f"cam{i}" for i in range(cameras)}
                await fake.wait_until(lambda: names <= set(fake.config_paths), WAIT_S)
                yield daemon
            finally:
                await app.stop()
                if wired is None:
                    await service.stop()


# --- recovery ------------------------------------------------------------------------------


async def recovery_round(daemon: Daemon, cameras: int, outage: float) -> dict[str, float]:
    fake, names = daemon.fake, {f"cam{i}" for i in range(cameras)}
    await fake.stop()
    await daemon.wait_health("degraded")
    await asyncio.sleep(outage)  # let the backoff grow to its cap
    started = time.perf_counter()
    await fake.start(reset=True)
    up = await daemon.wait_health("healthy")
    await fake.wait_until(lambda: names <= set(fake.config_paths), WAIT_S)
    done = time.perf_counter()
    return {
        "total_s": done - started,
        "detect_s": up - started,
        "reconcile_s": done - up,
    }


async def measure_recovery(args: argparse.Namespace) -> dict[str, Any]:
    async with running(args.cameras, args.backoff_max) as daemon:
        rounds = [
            await recovery_round(daemon, args.cameras, args.outage) for _ in range(args.rounds)
        ]
    totals = sorted(r["total_s"] for r in rounds)
    return {
        "cameras": args.cameras,
        "backoff_max_s": args.backoff_max,
        "outage_s": args.outage,
        "rounds": rounds,
        "total_median_s": totals[len(totals) // 2],
        "total_max_s": totals[-1],
        "detect_max_s": max(r["detect_s"] for r in rounds),
        "reconcile_max_s": max(r["reconcile_s"] for r in rounds),
        "target_s": TARGET_RECOVERY_S,
        "meets_target": totals[-1] < TARGET_RECOVERY_S,
    }


# --- outage cost on unrelated calls ----------------------------------------------------------


async def ping_latencies(client: CameraClient, count: int) -> list[int]:
    out = []
    for _ in range(count):
        start = time.perf_counter_ns()
        await client.call("ping")
        out.append(time.perf_counter_ns() - start)
    return out


async def condition(daemon: Daemon, name: str) -> None:
    fake = daemon.fake
    if name == "up":
        if not fake.running:
            await fake.start()
        fake.clear_faults()
        if not daemon.service.monitor.is_up:
            await daemon.wait_health("healthy")
    elif name == "refused":
        await fake.stop()
        if daemon.service.monitor.is_up:
            await daemon.wait_health("degraded")
    elif name == "hanging":
        if not fake.running:
            await fake.start()
        fake.delay_next(10**9, 3600.0)
        if daemon.service.monitor.is_up:
            await daemon.wait_health("degraded")


async def probe_cost_ms(daemon: Daemon, count: int = 50) -> float:
    """Mean wall time of one failing ``/v3/info`` probe (MediaMTX refusing connections)."""
    await condition(daemon, "refused")
    started = time.perf_counter()
    for _ in range(count):
        await daemon.service.monitor.probe_once()
    return (time.perf_counter() - started) / count * 1000


async def measure_outage_cost(args: argparse.Namespace) -> dict[str, Any]:
    """Interleaved blocks of pings per condition, so load drift hits each condition alike."""
    names = ("up", "refused", "hanging")
    samples: dict[str, list[int]] = {n: [] for n in names}
    block_p99: dict[str, list[float]] = {n: [] for n in names}
    async with (
        running(args.cameras, args.backoff_max) as daemon,
        CameraClient(daemon.ws_url) as client,
    ):
        await ping_latencies(client, 500)  # warm-up
        for _ in range(args.blocks):
            for name in names:
                await condition(daemon, name)
                block = await ping_latencies(client, args.pings)
                samples[name] += block
                block_p99[name].append(latency_summary_ms(block)["p99_ms"])
        probe_ms = await probe_cost_ms(daemon)
        await condition(daemon, "up")
    result: dict[str, Any] = {
        name: {
            **latency_summary_ms(values),
            "calls": len(values),
            "median_block_p99_ms": round(sorted(block_p99[name])[len(block_p99[name]) // 2], 3),
        }
        for name, values in samples.items()
    }
    result["failing_probe_ms"] = round(probe_ms, 3)
    result["probes_per_s_max"] = round(1 / args.backoff_max * 2, 1)  # delay >= cap/2
    return result


# --- report ----------------------------------------------------------------------------------


def report(results: dict[str, Any]) -> str:
    rec = results["recovery"]
    lines = [
        f"Recovery of {rec['cameras']} camera paths after a MediaMTX restart "
        f"(outage {rec['outage_s']:g} s, backoff_max {rec['backoff_max_s']:g} s, "
        f"{len(rec['rounds'])} rounds):",
        format_table(
            ["", "median", "max"],
            [
                ["restart → all paths back", *_ms_pair([r["total_s"] for r in rec["rounds"]])],
                ["  detection (first probe)", *_ms_pair([r["detect_s"] for r in rec["rounds"]])],
                ["  reconcile", *_ms_pair([r["reconcile_s"] for r in rec["rounds"]])],
            ],
        ),
        f"target < {rec['target_s']:g} s: {'met' if rec['meets_target'] else 'NOT met'}",
        "",
        "ping latency, one connection, sequential calls, interleaved blocks (ms):",
        format_table(
            ["MediaMTX", "calls", "p50", "p99", "block p99 (median)", "max"],
            [
                [
                    name,
                    str(s["calls"]),
                    f"{s['p50_ms']:.3f}",
                    f"{s['p99_ms']:.3f}",
                    f"{s['median_block_p99_ms']:.3f}",
                    f"{s['max_ms']:.3f}",
                ]
                for name, s in results["ping"].items()
                if isinstance(s, dict)
            ],
        ),
        f"one failing probe (refused): {results['ping']['failing_probe_ms']:.3f} ms wall, "
        f"at most {results['ping']['probes_per_s_max']:g} probes/s while down",
    ]
    return "\n".join(lines)


def _ms_pair(values: list[float]) -> list[str]:
    ordered = sorted(values)
    return [f"{ordered[len(ordered) // 2] * 1000:.0f} ms", f"{ordered[-1] * 1000:.0f} ms"]


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "environment": {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "recovery": await measure_recovery(args),
        "ping": await measure_outage_cost(args),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cameras", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--outage", type=float, default=2.0, help="seconds MediaMTX stays down")
    parser.add_argument("--backoff-max", type=float, default=0.5, help="mediamtx.backoff_max")
    parser.add_argument("--pings", type=int, default=500, help="calls per block")
    parser.add_argument("--blocks", type=int, default=20, help="blocks per condition")
    add_json_option(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.getLogger("camera_service").setLevel(logging.ERROR)  # outages are intended
    results = asyncio.run(main_async(args))
    publish(results, report(results), args.json)
    return 0 if results["recovery"]["meets_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
