"""Integrations: snapshot URL latency, MJPEG fan-out, MQTT state → central broker.

The daemon runs as a subprocess (`python -m camera_service run`, 127.0.0.1, ephemeral ports)
with a lavfi camera (`testsrc2=size=640x480:rate=15`, exclusive); clients run in this process.

* snapshot: `GET /cameras/cam0/snapshot.jpg` from a running reader (warm) vs a cold one-frame
  capture (the reader stopped first: `http.frame_keepalive` is short and the bench waits for
  the reader to end). Target: warm p50 < 20 ms.
* mjpeg: 1 viewer, then N viewers (default 20) of `stream.mjpg` for S seconds each: frames per
  second per viewer against the configured rate, and the CPU of the daemon and of its FFmpeg
  reader (psutil) — the ratio N/1 shows what a viewer costs.
* mqtt: two Mosquitto brokers (edge ← daemon, edge bridged to central); each state change
  (`add_external_stream` / `remove_external_stream` → retained `cameras/<id>/state`) is timed
  from the call to its arrival at a subscriber on the edge broker (baseline) and on the central
  broker (through the bridge). Reports p50/p99 of both.

    python -m bench.integrations                      # all three, ~1 min
    python -m bench.integrations --only mjpeg --viewers 20 --seconds 5
    python -m bench.integrations --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import aiomqtt
import psutil
import yaml

from bench.common import (
    REPO_ROOT,
    add_json_option,
    format_table,
    latency_summary_ms,
    log_stream,
    positive_int,
    publish,
)
from bench.snapshot_latency import BenchError, _terminate
from camera_service.auth.api_keys import ApiKeyStore
from camera_service.auth.roles import Role
from camera_service.client import CameraClient

HOST = "127.0.0.1"
CAMERA = "cam0"
FPS = 10
START_TIMEOUT_S = 30.0


def daemon_config(tmp: Path, mqtt_url: str | None) -> dict[str, Any]:
    config: dict[str, Any] = {
        "server": {"host": HOST, "port": 0, "rate_limit": {"enabled": False}},
        "http": {"host": HOST, "port": 0, "frame_keepalive": 0.5, "mjpeg_fps": FPS},
        "storage": {
            "recordings_dir": str(tmp / "recordings"),
            "snapshots_dir": str(tmp / "snapshots"),
            "state_dir": str(tmp / "state"),
        },
        "cameras": {
            "discovery": "off",
            "sources": [
                {
                    "id": CAMERA,
                    "input_format": "lavfi",
                    "input": "testsrc2=size=640x480:rate=15",
                    "exclusive": True,
                }
            ],
        },
        "mediamtx": {"enabled": False},
        "logging": {"level": "INFO", "format": "json"},
    }
    if mqtt_url is not None:
        config["mqtt"] = {"enabled": True, "url": mqtt_url, "node_id": "bench"}
    return config


@dataclass
class Daemon:
    proc: asyncio.subprocess.Process
    ws_port: int
    http_port: int
    key: str

    @property
    def http(self) -> str:
        return f"http://{HOST}:{self.http_port}"

    @property
    def ws(self) -> str:
        return f"ws://{HOST}:{self.ws_port}/ws"

    def ffmpeg_children(self) -> list[psutil.Process]:
        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        found = []
        for child in children:
            # a child that ends meanwhile (the encoder probe) is no FFmpeg of ours any more
            with contextlib.suppress(psutil.NoSuchProcess):
                if "ffmpeg" in child.name():
                    found.append(child)
        return found


@contextlib.asynccontextmanager
async def daemon(tmp: Path, mqtt_url: str | None = None) -> AsyncIterator[Daemon]:
    config = daemon_config(tmp, mqtt_url)
    (tmp / "state").mkdir(parents=True, exist_ok=True)
    key, _ = ApiKeyStore(tmp / "state" / "api_keys.json").create("bench", Role.ADMIN)
    config_file = tmp / "config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    log_path = tmp / "daemon.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "camera_service", "--config", str(config_file), "run"),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        ws_port, http_port = await asyncio.wait_for(_ports(proc, log_path), START_TIMEOUT_S)
        yield Daemon(proc, ws_port, http_port, key)
    finally:
        await _terminate(proc)


async def _ports(proc: asyncio.subprocess.Process, log_path: Path) -> tuple[int, int]:
    while True:
        text = await asyncio.to_thread(log_path.read_text, "utf-8", "replace")
        match = re.search(r'"ws_port": (\d+), "http_port": (\d+)', text)
        if match is not None:
            return int(match.group(1)), int(match.group(2))
        if proc.returncode is not None:
            raise BenchError(f"the daemon exited during start:\n{text[-2000:]}")
        await asyncio.sleep(0.05)


# --- snapshot URL -------------------------------------------------------------------------------


async def measure_snapshots(d: Daemon, warm_n: int, cold_n: int) -> dict[str, list[int]]:
    url = f"{d.http}/cameras/{CAMERA}/snapshot.jpg"
    headers = {"X-API-Key": d.key}
    cold: list[int] = []
    warm: list[int] = []
    async with aiohttp.ClientSession() as http:

        async def get() -> int:
            started = time.perf_counter_ns()
            async with http.get(url, headers=headers) as r:
                body = await r.read()
                if r.status != 200 or body[:2] != b"\xff\xd8":
                    raise BenchError(f"snapshot URL answered {r.status}")
            return time.perf_counter_ns() - started

        for _ in range(cold_n):
            await _until_reader_gone(d)
            cold.append(await get())
        await get()  # the reader runs now
        for _ in range(warm_n):
            warm.append(await get())
    return {"cold": cold, "warm": warm}


async def _until_reader_gone(d: Daemon, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while d.ffmpeg_children():
        if time.monotonic() > deadline:
            raise BenchError("the live-frame reader did not stop")
        await asyncio.sleep(0.05)


# --- MJPEG fan-out --------------------------------------------------------------------------------


async def measure_mjpeg(d: Daemon, viewers: int, seconds: float) -> dict[str, Any]:
    url = f"{d.http}/cameras/{CAMERA}/stream.mjpg"
    headers = {"X-API-Key": d.key}
    async with aiohttp.ClientSession() as http:

        async def watch(ready: asyncio.Event, stop: asyncio.Event) -> int:
            async with http.get(url, headers=headers) as r:
                reader = aiohttp.MultipartReader.from_response(r)
                frames = 0
                while not stop.is_set():
                    part = await asyncio.wait_for(reader.next(), 10)
                    if part is None:
                        break
                    assert isinstance(part, aiohttp.BodyPartReader)
                    await part.read()
                    if ready.is_set():
                        frames += 1
                return frames

        ready, stop = asyncio.Event(), asyncio.Event()
        tasks = [asyncio.create_task(watch(ready, stop)) for _ in range(viewers)]
        await asyncio.sleep(1.0)  # everyone attached and streaming before the timed window
        procs = [psutil.Process(d.proc.pid), *d.ffmpeg_children()]
        before = [_cpu(p) for p in procs]
        ready.set()
        started = time.monotonic()
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - started
        after = [_cpu(p) for p in procs]
        stop.set()
        counts = await asyncio.gather(*tasks)
    fps = [c / elapsed for c in counts]
    return {
        "viewers": viewers,
        "seconds": round(elapsed, 3),
        "fps_min": round(min(fps), 2),
        "fps_mean": round(sum(fps) / len(fps), 2),
        "daemon_cpu_percent": round(100 * (after[0] - before[0]) / elapsed, 1),
        "ffmpeg_cpu_percent": round(
            100 * sum(a - b for a, b in zip(after[1:], before[1:], strict=True)) / elapsed, 1
        ),
        "ffmpeg_readers": len(procs) - 1,
    }


def _cpu(proc: psutil.Process) -> float:
    try:
        times = proc.cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return float(times.user + times.system)


# --- MQTT through a bridge ----------------------------------------------------------------------


async def measure_mqtt(tmp: Path, changes: int) -> dict[str, list[int]]:
    from tests.support.mosquitto import Broker

    central = Broker(tmp, name="central")
    await central.start()
    edge = Broker(tmp, name="edge", bridge_to=central.port)
    try:
        await edge.start()
        async with daemon(tmp / "mqtt-daemon", edge.url) as d:
            return await _mqtt_changes(d, edge.port, central.port, changes)
    finally:
        edge.stop()
        central.stop()


async def _mqtt_changes(d: Daemon, edge: int, central: int, changes: int) -> dict[str, list[int]]:
    prefix = "camera-service/bench/cameras"
    arrivals: dict[str, dict[str, int]] = {"edge": {}, "central": {}}
    seen: dict[str, asyncio.Event] = {}

    async def listen(name: str, port: int, up: asyncio.Event) -> None:
        async with aiomqtt.Client(HOST, port) as client:
            await client.subscribe(f"{prefix}/+/state", qos=1)
            up.set()
            async for message in client.messages:
                payload = message.payload if isinstance(message.payload, bytes) else b""
                device = message.topic.value.split("/")[-2]
                tag = f"{device}:{'here' if payload else 'gone'}"  # forgotten: empty retained
                arrivals[name].setdefault(tag, time.perf_counter_ns())
                if tag in arrivals["edge"] and tag in arrivals["central"] and tag in seen:
                    seen[tag].set()

    ups = [asyncio.Event(), asyncio.Event()]
    listeners = [
        asyncio.create_task(listen("edge", edge, ups[0])),
        asyncio.create_task(listen("central", central, ups[1])),
    ]
    to_edge: list[int] = []
    to_central: list[int] = []
    try:
        await asyncio.wait_for(asyncio.gather(*(u.wait() for u in ups)), 10)
        async with CameraClient(d.ws) as rpc:
            await rpc.authenticate(d.key)
            for n in range(changes):
                name = f"bench{n}"
                url = f"rtsp://127.0.0.1:9/{name}"
                for step, tag in ((0, f"{name}:here"), (1, f"{name}:gone")):
                    seen[tag] = asyncio.Event()
                    started = time.perf_counter_ns()
                    if step == 0:
                        await rpc.call(
                            "add_external_stream", {"stream_url": url, "stream_name": name}
                        )
                    else:
                        await rpc.call("remove_external_stream", {"stream_url": url})
                    await asyncio.wait_for(seen[tag].wait(), 10)
                    to_edge.append(arrivals["edge"][tag] - started)
                    to_central.append(arrivals["central"][tag] - started)
    finally:
        for task in listeners:
            task.cancel()
        await asyncio.gather(*listeners, return_exceptions=True)
    return {"edge": to_edge, "central": to_central}


# --- report ---------------------------------------------------------------------------------------


def summary(values_ns: list[int]) -> dict[str, float]:
    return {"n": len(values_ns), **latency_summary_ms(values_ns)}


async def run(args: argparse.Namespace, log: TextIO) -> dict[str, Any]:
    report: dict[str, Any] = {"cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="bench-integrations-") as name:
        tmp = Path(name)
        if args.only in (None, "snapshot", "mjpeg"):
            async with daemon(tmp / "http-daemon") as d:
                if args.only in (None, "snapshot"):
                    print(f"snapshot URL: {args.cold} cold, {args.warm} warm …", file=log)
                    snaps = await measure_snapshots(d, args.warm, args.cold)
                    warm, cold = summary(snaps["warm"]), summary(snaps["cold"])
                    report["snapshot"] = {
                        "warm": warm,
                        "cold": cold,
                        "cold_over_warm_p50": round(cold["p50_ms"] / warm["p50_ms"], 1),
                    }
                if args.only in (None, "mjpeg"):
                    print(
                        f"MJPEG: 1 viewer, then {args.viewers}, {args.seconds} s each …", file=log
                    )
                    one = await measure_mjpeg(d, 1, args.seconds)
                    many = await measure_mjpeg(d, args.viewers, args.seconds)
                    report["mjpeg"] = {"configured_fps": FPS, "one": one, "many": many}
        if args.only in (None, "mqtt"):
            print(f"MQTT: {args.changes} add/remove pairs through the bridge …", file=log)
            mqtt = await measure_mqtt(tmp, args.changes)
            report["mqtt"] = {"edge": summary(mqtt["edge"]), "central": summary(mqtt["central"])}
    return report


def render(report: dict[str, Any]) -> str:
    rows: list[list[str]] = []
    if "snapshot" in report:
        s = report["snapshot"]
        for name in ("warm", "cold"):
            v = s[name]
            rows.append(
                [f"snapshot.jpg {name}", f"{v['p50_ms']}", f"{v['p95_ms']}", f"{v['p99_ms']}"]
            )
    if "mqtt" in report:
        for name in ("edge", "central"):
            v = report["mqtt"][name]
            rows.append(
                [f"MQTT state → {name}", f"{v['p50_ms']}", f"{v['p95_ms']}", f"{v['p99_ms']}"]
            )
    text = format_table(["latency (ms)", "p50", "p95", "p99"], rows) if rows else ""
    if "mjpeg" in report:
        m = report["mjpeg"]
        mrows = [
            [str(r["viewers"]), str(r["fps_min"]), str(r["fps_mean"]),
             str(r["daemon_cpu_percent"]), str(r["ffmpeg_cpu_percent"]), str(r["ffmpeg_readers"])]
            for r in (m["one"], m["many"])
        ]  # fmt: skip
        headers = [
            "MJPEG viewers",
            "fps min",
            "fps mean",
            "daemon CPU %",
            "FFmpeg CPU %",
            "readers",
        ]
        text += "\n\n" + format_table(headers, mrows) + f"\n(configured {m['configured_fps']} fps)"
    return text.strip()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--only", choices=("snapshot", "mjpeg", "mqtt"))
    parser.add_argument("--warm", type=positive_int, default=100, help="warm snapshot requests")
    parser.add_argument("--cold", type=positive_int, default=10, help="cold snapshot requests")
    parser.add_argument("--viewers", type=positive_int, default=20)
    parser.add_argument("--seconds", type=float, default=5.0, help="MJPEG window per run")
    parser.add_argument("--changes", type=positive_int, default=50, help="MQTT add/remove pairs")
    add_json_option(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log = log_stream(args.json)
    report = asyncio.run(run(args, log))
    publish(report, render(report), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
