"""Hot-plug fan-out: time from a camera hot-plug until every subscribed client has been told.

The daemon runs in this process (`camera_service.app.Application`, 127.0.0.1, ephemeral ports)
with a `FakeEventSource` on the discovery seam. `--clients` WebSocket clients run in one or more
child processes (`--client-procs`, default 1): plain `websockets` client connections, each
authenticated with a viewer API key and subscribed to `camera.*`, with one reader task that
stamps every frame with `time.monotonic_ns()` as it is handed over.

One measured event: the parent stamps `time.monotonic_ns()` and calls
`source.plug(*uvc_webcam(0, port="1"))`; the children count the `camera_status_update` each
client receives; when every client has it, they report, and the parent unplugs the camera
(also measured, reported separately) to reset, then plugs it again. The latency of an event is
max over clients(receive time) − injection time: CLOCK_MONOTONIC is system-wide on Linux, so
the two processes' stamps are comparable. A listener on the event bus also stamps the moment
the daemon publishes the update, which splits the latency into detection (event source →
discovery → probe → registry → publish) and fan-out (publish → last client). Also reported:
CPU per event on each side and the daemon's GC pauses during the events.

    python -m bench.hotplug_fanout                        # 1000 clients, 50 (+50) events, ~10 s
    python -m bench.hotplug_fanout --json results.json    # also write the figures as JSON
    python -m bench.hotplug_fanout --json                 # JSON on stdout, table on stderr
    python -m bench.hotplug_fanout --profile fanout.pstats  # cProfile the daemon's events
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

from websockets.asyncio.client import ClientConnection, connect

from bench.common import (
    REPO_ROOT,
    add_json_option,
    add_loop_option,
    format_table,
    latency_summary_ms,
    log_stream,
    positive_int,
    publish,
    run_on_loop,
    subprocess_env,
)
from camera_service.eventloop import running_loop_name

HOST = "127.0.0.1"
TARGET_P99_MS = 50.0
SEED_DETECTION_MS = 200.0  # the seed system's published "sub-200 ms detection"
NOTE_MARK = '"camera_status_update"'
EXPECTED_STATUS = ('"status":"CONNECTED"', '"status":"DISCONNECTED"')  # plug, unplug
CONNECT_CONCURRENCY = 50
EVENT_TIMEOUT_S = 10.0
SETUP_TIMEOUT_S = 60.0
SETTLE_S = 0.5  # after setup, before the first event
GAP_S = 0.02  # idle time between one event's completion and the next injection
ACTIONS = ("plug", "unplug")


# --- the client side (child process) ----------------------------------------------------------


@dataclass
class ClientJob:
    url: str
    token: str
    clients: int
    notes: int  # camera_status_update notifications each client must receive
    lean: bool = True  # count notifications from raw bytes (see LeanReader)

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def _call(ws: ClientConnection, method: str, params: dict[str, Any]) -> None:
    await ws.send(json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": 1}))
    reply = await ws.recv()
    if '"result"' not in reply:
        raise RuntimeError(f"{method} refused: {str(reply)[:200]}")


class LeanReader:
    """Counts notifications straight from the socket's bytes, without parsing frames.

    With 1,000 connections in one Python process, `websockets`' frame parsing and reader
    tasks cost ~37 ms of client CPU per event, more than the daemon spends sending: on a
    2-core box the load generator, not the daemon, then sets the figure. Server frames are
    unmasked text, so the notification's method name is visible in the raw bytes."""

    mark = NOTE_MARK.encode()

    def __init__(self, client: int, receipts: Receipts) -> None:
        self.client = client
        self.receipts = receipts
        self.note = 0
        self.tail = b""

    def feed(self, data: bytes, stamp: int) -> None:
        buffer = self.tail + data
        start = buffer.find(self.mark)
        while start != -1:
            window = buffer[start : start + 512].decode("utf-8", "replace")
            self.receipts.record(self.note, self.client, stamp, stamp, window)
            self.note += 1
            start = buffer.find(self.mark, start + len(self.mark))
        self.tail = buffer[-(len(self.mark) - 1) :]


class StampedConnection(ClientConnection):
    """A `websockets` client connection that also stamps when bytes reach it from the socket,
    to tell the server's delivery from the client's own scheduling of its reader task. With
    `lean` set, bytes go to the LeanReader instead of websockets' parser."""

    arrived = 0
    lean: LeanReader | None = None

    def data_received(self, data: bytes) -> None:
        self.arrived = time.monotonic_ns()
        if self.lean is not None:
            self.lean.feed(data, self.arrived)
            return
        super().data_received(data)


async def _open_client(url: str, token: str, limit: asyncio.Semaphore) -> StampedConnection:
    async with limit:
        ws = await connect(
            url,
            compression=None,
            ping_interval=None,
            max_size=1 << 20,
            create_connection=StampedConnection,
        )
        await _call(ws, "authenticate", {"auth_token": token})
        await _call(ws, "subscribe_events", {"topics": ["camera.*"]})
        assert isinstance(ws, StampedConnection)
        return ws


class Receipts:
    """Receive stamps per note and client; reports each note once every client has it."""

    def __init__(self, clients: int, notes: int) -> None:
        self.clients = clients
        self.notes = notes
        self.stamps = [[0] * clients for _ in range(notes)]
        self.arrivals = [[0] * clients for _ in range(notes)]
        self.cpu_ns = [0] * notes  # this process's CPU since the previous note completed
        self.counts = [0] * notes
        self.mismatched = 0
        self.extra = 0
        self.done = asyncio.Event()
        self._finished = 0
        self._cpu_mark = time.process_time_ns()

    def record(self, note: int, client: int, stamp: int, arrived: int, frame: str) -> None:
        if note >= self.notes:
            self.extra += 1
            return
        if EXPECTED_STATUS[note % 2] not in frame:
            self.mismatched += 1
        self.stamps[note][client] = stamp
        self.arrivals[note][client] = arrived
        self.counts[note] += 1
        if self.counts[note] == self.clients:
            cpu = time.process_time_ns()
            self.cpu_ns[note], self._cpu_mark = cpu - self._cpu_mark, cpu
            _emit({"event": "got", "note": note})
            self._finished += 1
            if self._finished == self.notes:
                self.done.set()

    def reset_cpu(self) -> None:
        self._cpu_mark = time.process_time_ns()


async def _read(ws: StampedConnection, client: int, receipts: Receipts) -> None:
    clock = time.monotonic_ns
    note = 0
    with contextlib.suppress(Exception):
        async for frame in ws:
            stamp = clock()
            if not isinstance(frame, str) or NOTE_MARK not in frame:
                continue
            receipts.record(note, client, stamp, ws.arrived, frame)
            note += 1


async def run_clients(job: ClientJob) -> None:
    limit = asyncio.Semaphore(CONNECT_CONCURRENCY)
    conns = await asyncio.wait_for(
        asyncio.gather(*(_open_client(job.url, job.token, limit) for _ in range(job.clients))),
        SETUP_TIMEOUT_S,
    )
    receipts = Receipts(job.clients, job.notes)
    readers: list[asyncio.Task[None]] = []
    for i, ws in enumerate(conns):
        if job.lean:
            ws.lean = LeanReader(i, receipts)
        else:
            readers.append(asyncio.create_task(_read(ws, i, receipts)))
    try:
        _emit({"event": "ready"})
        receipts.reset_cpu()
        await asyncio.wait_for(receipts.done.wait(), EVENT_TIMEOUT_S * (job.notes + 1))
        _emit(
            {
                "event": "result",
                "last": [max(stamps) for stamps in receipts.stamps],
                "first": [min(stamps) for stamps in receipts.stamps],
                "median": [int(statistics.median(stamps)) for stamps in receipts.stamps],
                "arrived_last": [max(stamps) for stamps in receipts.arrivals],
                "cpu_ns": receipts.cpu_ns,
                "mismatched": receipts.mismatched,
            }
        )
    finally:
        for task in readers:
            task.cancel()
        if job.lean:  # websockets' parser was bypassed: its state is stale, drop the sockets
            for ws in conns:
                ws.transport.abort()
        else:
            await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)


def worker_main(job_json: str) -> int:
    try:
        asyncio.run(run_clients(ClientJob(**json.loads(job_json))))
    except Exception as exc:
        _emit({"event": "error", "error": f"{type(exc).__name__}: {exc}"})
        return 1
    return 0


class ClientProcess:
    """The parent's handle on one child process of clients."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, job: ClientJob) -> ClientProcess:
        env = subprocess_env()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.hotplug_fanout",
            "--worker",
            job.to_json(),
            stdout=asyncio.subprocess.PIPE,
            cwd=REPO_ROOT,
            env=env,
        )
        return cls(proc)

    async def expect(self, event: str, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise RuntimeError("a client process exited early")
        message: dict[str, Any] = json.loads(line)
        if message.get("event") == "error":
            raise RuntimeError(f"client process: {message['error']}")
        if message.get("event") != event:
            raise RuntimeError(f"client process: expected {event!r}, got {message!r}")
        return message

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.proc.wait(), 15)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


# --- the daemon side (this process) -----------------------------------------------------------


def split(total: int, parts: int) -> list[int]:
    """`total` clients over `parts` processes, as evenly as possible (no empty part)."""
    parts = max(1, min(parts, total))
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def overrides(clients: int) -> dict[str, Any]:
    """The daemon's config for the bench: room for every client, everything else default
    (the per-connection rate limit stays on: each client makes only two calls)."""
    return {
        "server": {
            "max_connections": max(1000, clients + 16),
            # every client comes from one loopback address (the per-address caps are
            # measured in bench/abuse.py)
            "max_connections_per_address": max(1000, clients + 16),
        },
        "logging": {"level": "WARNING"},
    }


def _summary(latencies_ns: Sequence[int]) -> dict[str, float]:
    return latency_summary_ms(list(latencies_ns))


class GcPauses:
    """The daemon process's garbage-collector pauses while installed (a `gc.callbacks` hook)."""

    def __init__(self) -> None:
        self.pauses_ns: list[list[int]] = [[], [], []]
        self._started = 0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter_ns()
        else:
            self.pauses_ns[info["generation"]].append(time.perf_counter_ns() - self._started)

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)

    def report(self, tracked_objects: int) -> dict[str, Any]:
        return {
            "collections": [len(p) for p in self.pauses_ns],
            "max_pause_ms": [round(max(p, default=0) / 1e6, 2) for p in self.pauses_ns],
            "tracked_objects": tracked_objects,
        }


async def run_benchmark(args: argparse.Namespace, log: TextIO) -> dict[str, Any]:
    from camera_service.app import Application
    from camera_service.auth.roles import Role
    from camera_service.events import Event
    from tests.support.daemon import make_config
    from tests.support.fake_devices import FakeEventSource, FakeProber, uvc_webcam

    started = time.perf_counter()
    profiler = cProfile.Profile() if args.profile else None
    notes = 2 * args.events
    injected: list[int] = []
    published: list[int] = []
    server_cpu: list[int] = []
    gc_pauses = GcPauses()

    def on_publish(event: Event) -> None:
        if event.method == "camera_status_update":
            published.append(time.monotonic_ns())

    with tempfile.TemporaryDirectory(prefix="bench-hotplug-") as tmp:
        prober = FakeProber()
        source = FakeEventSource(prober)
        config = make_config(Path(tmp), overrides(args.clients))
        app = Application(config, event_source=source, prober=prober)
        await app.start()
        children: list[ClientProcess] = []

        async def inject(note: int) -> None:
            """One plug (even notes) or unplug (odd), until every client has been told."""
            camera = uvc_webcam(0, port="1")
            cpu0 = time.process_time_ns()
            injected.append(time.monotonic_ns())
            if note % 2 == 0:
                source.plug(*camera)
            else:
                source.unplug(*(dev.path for dev in camera))
            for child in children:
                await child.expect("got", EVENT_TIMEOUT_S)
            server_cpu.append(time.process_time_ns() - cpu0)

        try:
            await asyncio.wait_for(app.discovery.first_scan_done.wait(), 10)
            app.bus.add_listener(on_publish)
            key, _ = app.keys.create("bench-hotplug", Role.VIEWER)
            url = f"ws://{HOST}:{app.ws.port}{app.config.server.path}"
            setup0 = time.perf_counter()
            for share in split(args.clients, args.client_procs):
                job = ClientJob(url, key, share, notes, lean=not args.websockets_clients)
                children.append(await ClientProcess.start(job))
            for child in children:
                await child.expect("ready", SETUP_TIMEOUT_S)
            setup_s = time.perf_counter() - setup0
            print(
                f"{args.clients} clients connected, authenticated and subscribed in "
                f"{setup_s:.1f} s ({len(children)} client process(es))",
                file=log,
                flush=True,
            )
            await asyncio.sleep(SETTLE_S)
            load_before = os.getloadavg()[0]
            tracked_objects = len(gc.get_objects())
            with gc_pauses:
                for note in range(notes):
                    if profiler is not None:
                        profiler.enable()
                    try:
                        await inject(note)
                    finally:
                        if profiler is not None:
                            profiler.disable()
                    await asyncio.sleep(GAP_S)
            results = [await child.expect("result", 30) for child in children]
        finally:
            for child in children:
                await child.close()
            await app.stop()
    if profiler is not None:
        profiler.dump_stats(args.profile)
        print(f"cProfile of the daemon during the events written to {args.profile}", file=log)
    if len(published) != notes:
        raise RuntimeError(f"expected {notes} camera_status_update publishes, saw {len(published)}")

    def column(name: str, reduce: Callable[[Iterable[int]], int]) -> list[int]:
        return [reduce(r[name][i] for r in results) for i in range(notes)]

    last, first, arrived = column("last", max), column("first", min), column("arrived_last", max)
    median_client = column("median", max)
    client_cpu = column("cpu_ns", sum)
    stages: dict[str, list[int]] = {
        "all_clients": [a - b for a, b in zip(last, injected, strict=True)],
        "all_arrived": [a - b for a, b in zip(arrived, injected, strict=True)],
        "median_client": [a - b for a, b in zip(median_client, injected, strict=True)],
        "first_client": [a - b for a, b in zip(first, injected, strict=True)],
        "detect": [a - b for a, b in zip(published, injected, strict=True)],
        "fanout": [a - b for a, b in zip(last, published, strict=True)],
        "server_cpu": server_cpu,
        "client_cpu": client_cpu,
    }
    per_action = {
        action: {name: _summary(values[offset::2]) for name, values in stages.items()}
        for offset, action in enumerate(ACTIONS)
    }
    plug = per_action["plug"]["all_clients"]
    return {
        "clients": args.clients,
        "events": args.events,
        "p50_ms": plug["p50_ms"],
        "p99_ms": plug["p99_ms"],
        "max_ms": plug["max_ms"],
        "plug": per_action["plug"],
        "unplug": per_action["unplug"],
        "mismatched_notes": sum(int(r["mismatched"]) for r in results),
        "daemon_gc": gc_pauses.report(tracked_objects),
        "target": {
            "p99_max_ms": TARGET_P99_MS,
            "met": plug["p99_ms"] < TARGET_P99_MS,
            "seed_detection_ms": SEED_DETECTION_MS,
        },
        "config": {
            "client_procs": len(children),
            "client": "websockets.asyncio.client.connect (compression off, no client pings)",
            "max_connections": config.server.max_connections,
            "rate_limit": config.server.rate_limit.model_dump(),
            "gap_ms": GAP_S * 1000,
            "loop": running_loop_name(),
            "python": platform.python_version(),
            "websockets": metadata.version("websockets"),
            "cpus": len(os.sched_getaffinity(0)),
            "loadavg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "setup_s": round(setup_s, 2),
            "duration_s": round(time.perf_counter() - started, 1),
        },
    }


STAGE_NOTES = {
    "all_clients": "injection → every client's reader has it (the figure)",
    "all_arrived": "injection → its bytes reached every client connection",
    "median_client": "injection → half the clients have it",
    "first_client": "injection → the first client has it",
    "detect": "injection → daemon publishes camera_status_update",
    "fanout": "publish → every client's reader has it",
    "server_cpu": "daemon process CPU per event (ms)",
    "client_cpu": "client process(es) CPU per event (ms)",
}


def render(report: dict[str, Any]) -> str:
    rows = []
    for stage in STAGE_NOTES:
        plug, unplug = report["plug"][stage], report["unplug"][stage]
        rows.append(
            [
                stage,
                f"{plug['p50_ms']:.2f}",
                f"{plug['p99_ms']:.2f}",
                f"{plug['max_ms']:.2f}",
                f"{unplug['p50_ms']:.2f}",
                f"{unplug['p99_ms']:.2f}",
            ]
        )
    cfg, target, gc_info = report["config"], report["target"], report["daemon_gc"]
    headers = ["ms", "plug p50", "p99", "max", "unplug p50", "p99"]
    verdict = "met" if target["met"] else "NOT met"
    return "\n".join(
        [
            f"{report['clients']} clients x {report['events']} plug (+ unplug) events, "
            f"{cfg['client_procs']} client process(es), {cfg['cpus']} CPUs, "
            f"load avg {cfg['loadavg_1m'][0]:.2f}→{cfg['loadavg_1m'][1]:.2f}, "
            f"{cfg['duration_s']} s",
            format_table(headers, rows),
            *(f"  {stage:<13} {note}" for stage, note in STAGE_NOTES.items()),
            f"daemon GC during the events: collections per generation {gc_info['collections']}, "
            f"longest pause per generation {gc_info['max_pause_ms']} ms, "
            f"{gc_info['tracked_objects']} tracked objects",
            f"mismatched notifications: {report['mismatched_notes']}",
            f"target p99 < {target['p99_max_ms']:g} ms (plug → every client): {verdict} "
            f"(p99 {report['p99_ms']:.2f} ms)",
        ]
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.hotplug_fanout",
        description=__doc__.splitlines()[0] if __doc__ else "",
    )
    parser.add_argument("--clients", type=positive_int, default=1000, help="subscribed clients")
    parser.add_argument("--events", type=positive_int, default=50, help="measured plug events")
    parser.add_argument(
        "--client-procs", type=positive_int, default=1, help="processes the clients are split over"
    )
    add_json_option(parser)
    add_loop_option(parser)
    parser.add_argument(
        "--profile", metavar="PATH", help="cProfile the daemon during the events into PATH"
    )
    parser.add_argument(
        "--websockets-clients",
        action="store_true",
        help="parse every frame with websockets in the clients (costlier load generator)",
    )
    parser.add_argument("--worker", metavar="JOB", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        return worker_main(args.worker)
    log = log_stream(args.json)
    report = run_on_loop(run_benchmark(args, log), args.loop)
    publish(report, render(report), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
