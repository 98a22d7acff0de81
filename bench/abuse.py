"""Hostile clients against a real daemon process: what they cost it and how fast it sheds them.

Three scenarios, each against a fresh `camera-service run` child process (discovery and
MediaMTX off, default limits unless `--set` overrides them), its RSS sampled every 0.25 s:

- `nonreading`: `--clients` WebSocket clients (spread over `--addresses` loopback source
  addresses) that never authenticate and never read (receive buffer 4 KiB, reading paused
  after the handshake) send batches of 50 `rpc.discover` as fast as the socket takes them,
  reconnecting whenever the daemon drops them, for `--duration` seconds. Then they leave.
  Reported: peak RSS, the longest and median lifetime of a hostile connection (connected →
  dropped by the daemon), how long the daemon takes to hold none of them once they left, the
  RSS after, and the time SIGTERM takes.
- `slowloris`: `--slow` HTTP connections to port 8003 that send a partial request head and
  one more header line every 2 s, never finishing it, reconnecting when dropped. A probe
  from another address asks `/health/live` and opens a WebSocket + `ping` every 0.5 s.
  Reported: the most connections the daemon held at once, their longest lifetime, the probe's
  failures and worst latency, the `accept() out of system resource` log lines.
- `slots`: `--holders` WebSocket connections that open and stay silent (answering pings),
  reconnecting when dropped, while an admin from another address connects and authenticates
  every 0.5 s. Reported: admin successes/failures and worst latency, holders' lifetime.

    python -m bench.abuse                                   # all three, about 4 minutes
    python -m bench.abuse --scenario nonreading --clients 100 --duration 60
    python -m bench.abuse --scenario slowloris --slow 2000 --duration 30
    python -m bench.abuse --scenario slots --holders 1000 --duration 30
    python -m bench.abuse --set server.auth_timeout=5 --json results.json

The daemon runs with a soft fd limit of `--nofile` (default 1024, a common distribution
default) so that fd exhaustion is reachable; it may raise it itself. `--rss-abort-mb`
(default 1500) kills the daemon when its RSS passes that, so an unprotected build cannot take
the machine down.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import yaml

from bench.common import (
    add_json_option,
    format_table,
    log_stream,
    positive_int,
    publish,
    subprocess_env,
)
from tests.support.daemon import base_config
from tests.support.hostile import HostileConnection, frame, open_tcp, ws_open

SCENARIOS = ("nonreading", "slowloris", "slots")
START_TIMEOUT_S = 30.0
SAMPLE_S = 0.25
PROBE_ADDRESS = "127.0.2.1"
TIMEOUT = aiohttp.ClientTimeout(total=3)
DISCOVER_BATCH = json.dumps(
    [{"jsonrpc": "2.0", "method": "rpc.discover", "id": i} for i in range(50)]
).encode()


# --- the daemon under test ------------------------------------------------------------------


def _config(tmp: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    """The test daemons' configuration (tests/support/daemon.py) plus dotted overrides."""
    base = base_config(tmp)
    for dotted, value in overrides.items():
        node = base
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return base


class Daemon:
    """`camera-service run` in a child process; RSS sampled, log lines kept."""

    def __init__(self, tmp: Path, overrides: dict[str, Any], nofile: int, rss_abort_mb: int):
        self.config_file = tmp / "config.yaml"
        self.config_file.write_text(yaml.safe_dump(_config(tmp, overrides)))
        self.nofile = nofile
        self.rss_abort = rss_abort_mb << 20
        self.proc: asyncio.subprocess.Process | None = None
        self.ps: psutil.Process | None = None
        self.ws_port = 0
        self.http_port = 0
        self.lines: list[str] = []
        self.rss_peak = 0
        self.rss_last = 0
        self.aborted = False
        self._tasks: list[asyncio.Task[None]] = []

    def _limit_fds(self) -> None:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(self.nofile, hard), hard))

    def token(self, role: str = "admin") -> str:
        command = ["token", "--role", role, "--user", "bench-abuse", "--ttl", "1h"]
        out = subprocess.run(
            [sys.executable, "-m", "camera_service", "--config", str(self.config_file), *command],
            capture_output=True,
            text=True,
            check=True,
            env=subprocess_env(),
            timeout=60,
        )
        return out.stdout.strip()

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "camera_service",
            "--config",
            str(self.config_file),
            "run",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**subprocess_env(), "PYTHONUNBUFFERED": "1"},
            preexec_fn=self._limit_fds,
        )
        assert self.proc.stdout is not None
        async with asyncio.timeout(START_TIMEOUT_S):
            while True:
                line = (await self.proc.stdout.readline()).decode()
                if not line:
                    raise RuntimeError("daemon exited during start:\n" + "".join(self.lines))
                self.lines.append(line)
                if "camera-service started" in line:
                    self.ws_port = int(re.search(r'"ws_port": (\d+)', line).group(1))  # type: ignore[union-attr]
                    self.http_port = int(re.search(r'"http_port": (\d+)', line).group(1))  # type: ignore[union-attr]
                    break
        self.ps = psutil.Process(self.proc.pid)
        self._tasks = [asyncio.create_task(self._drain()), asyncio.create_task(self._sample())]

    async def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace"))

    async def _sample(self) -> None:
        assert self.ps is not None
        with contextlib.suppress(psutil.Error):
            while True:
                self.rss_last = self.ps.memory_info().rss
                self.rss_peak = max(self.rss_peak, self.rss_last)
                if self.rss_last > self.rss_abort and not self.aborted:
                    self.aborted = True
                    self.ps.kill()
                await asyncio.sleep(SAMPLE_S)

    def rss(self) -> int:
        assert self.ps is not None
        return int(self.ps.memory_info().rss)

    def connections(self, port: int) -> int:
        """Established TCP connections of the daemon on one of its ports."""
        assert self.ps is not None
        try:
            conns = self.ps.net_connections(kind="tcp")
        except psutil.Error:
            return 0
        return sum(1 for c in conns if c.laddr and c.laddr.port == port and c.raddr)

    async def sessions(self) -> int | None:
        """Open WebSocket sessions as the daemon counts them (its health endpoint)."""
        url = f"http://127.0.0.1:{self.http_port}/health/websocket_server"
        try:
            async with aiohttp.ClientSession() as http, http.get(url, timeout=TIMEOUT) as resp:
                body = await resp.json()
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None
        count = body.get("details", {}).get("connections")
        return count if isinstance(count, int) else None

    def fd_soft_limit(self) -> int:
        assert self.ps is not None
        return int(self.ps.rlimit(psutil.RLIMIT_NOFILE)[0])

    def count_lines(self, fragment: str) -> int:
        return sum(1 for line in self.lines if fragment in line)

    async def wait_until(self, check: Callable[[], bool], timeout: float) -> float | None:
        """Seconds until `check()` holds (polled every 0.25 s), None when it did not."""
        start = time.perf_counter()
        while time.perf_counter() - start < timeout:
            if check():
                return time.perf_counter() - start
            await asyncio.sleep(SAMPLE_S)
        return None

    async def terminate(self, timeout: float = 60.0) -> float | None:
        """SIGTERM; seconds until the process exited (None: killed after `timeout`)."""
        assert self.proc is not None
        if self.proc.returncode is not None:
            raise RuntimeError(
                f"daemon exited early ({self.proc.returncode}):\n" + "".join(self.lines[-20:])
            )
        start = time.perf_counter()
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
            elapsed: float | None = time.perf_counter() - start
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            elapsed = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        return elapsed


# --- hostile clients ------------------------------------------------------------------------


def _addresses(base: str, count: int) -> list[str]:
    prefix = base.rsplit(".", 1)[0]
    return [f"{prefix}.{1 + i}" for i in range(count)]


@dataclass
class Lifetimes:
    """How long hostile connections lived until the daemon dropped them."""

    opened: int = 0
    refused: int = 0
    dropped: list[float] = field(default_factory=list)
    open_now: int = 0

    def summary(self) -> dict[str, Any]:
        values = sorted(self.dropped)
        return {
            "opened": self.opened,
            "refused": self.refused,
            "dropped_by_daemon": len(values),
            "lifetime_max_s": round(values[-1], 2) if values else None,
            "lifetime_p50_s": round(statistics.median(values), 2) if values else None,
        }


async def _nonreading_client(
    source: str, port: int, deadline: float, stats: Lifetimes, leave: asyncio.Event
) -> None:
    while time.monotonic() < deadline and not leave.is_set():
        conn = await ws_open(source, port, rcvbuf=4096)
        if conn is None:
            stats.refused += 1
            await asyncio.sleep(0.2)
            continue
        assert conn.transport is not None
        conn.transport.pause_reading()
        stats.opened += 1
        stats.open_now += 1
        opened = time.monotonic()
        batch = frame(1, DISCOVER_BATCH)
        try:
            while not conn.lost.done() and time.monotonic() < deadline and not leave.is_set():
                conn.transport.write(batch)
                writable = asyncio.ensure_future(conn.writable())
                await asyncio.wait(
                    [writable, conn.lost], timeout=1.0, return_when=asyncio.FIRST_COMPLETED
                )
                writable.cancel()
                await asyncio.sleep(0.05)
            if conn.lost.done():
                stats.dropped.append(time.monotonic() - opened)
        finally:
            stats.open_now -= 1
            if not conn.lost.done():
                conn.transport.abort()


async def nonreading(args: argparse.Namespace, daemon: Daemon, log: Any) -> dict[str, Any]:
    rss_before = daemon.rss()
    stats = Lifetimes()
    leave = asyncio.Event()
    deadline = time.monotonic() + args.duration
    sources = _addresses("127.0.1.0", args.addresses)
    clients = [
        asyncio.create_task(
            _nonreading_client(sources[i % len(sources)], daemon.ws_port, deadline, stats, leave)
        )
        for i in range(args.clients)
    ]
    print(f"nonreading: {args.clients} clients for {args.duration:g} s", file=log, flush=True)
    await asyncio.wait(clients, timeout=args.duration + 15)
    leave.set()
    await asyncio.gather(*clients, return_exceptions=True)
    held_at_leave = daemon.connections(daemon.ws_port)
    sessions_at_leave = await daemon.sessions()
    drained = await daemon.wait_until(lambda: daemon.connections(daemon.ws_port) == 0, 60)
    start = time.perf_counter()
    sessions_gone = None
    while time.perf_counter() - start < 60:
        if await daemon.sessions() == 0:
            sessions_gone = time.perf_counter() - start
            break
        await asyncio.sleep(SAMPLE_S)
    await asyncio.sleep(2)
    return {
        "clients": args.clients,
        "duration_s": args.duration,
        "rss_before_mb": round(rss_before / 2**20, 1),
        "rss_peak_mb": round(daemon.rss_peak / 2**20, 1),
        "rss_after_mb": round(daemon.rss_last / 2**20, 1),
        "held_when_clients_left": held_at_leave,
        "sessions_when_clients_left": sessions_at_leave,
        "sockets_gone_after_leave_s": None if drained is None else round(drained, 2),
        "sessions_gone_after_sockets_s": None if sessions_gone is None else round(sessions_gone, 2),
        "killed_over_rss_limit": daemon.aborted,
        **stats.summary(),
    }


async def _slow_client(
    source: str, port: int, deadline: float, stats: Lifetimes, peak: list[int]
) -> None:
    while time.monotonic() < deadline:
        try:
            conn = await open_tcp(source, port)
        except OSError:
            stats.refused += 1
            await asyncio.sleep(0.5)
            continue
        assert conn.transport is not None
        stats.opened += 1
        stats.open_now += 1
        peak[0] = max(peak[0], stats.open_now)
        opened = time.monotonic()
        try:
            conn.transport.write(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            n = 0
            while time.monotonic() < deadline and not conn.lost.done():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(conn.lost), 2.0)
                if not conn.lost.done():
                    n += 1
                    conn.transport.write(f"X-Slow-{n}: {n}\r\n".encode())
            if conn.lost.done():
                stats.dropped.append(time.monotonic() - opened)
        finally:
            stats.open_now -= 1
            if not conn.lost.done():
                conn.transport.abort()


@dataclass
class Probe:
    ok: int = 0
    failed: int = 0
    worst_ms: float = 0.0

    def record(self, started: float, ok: bool) -> None:
        if ok:
            self.ok += 1
            self.worst_ms = max(self.worst_ms, (time.perf_counter() - started) * 1000)
        else:
            self.failed += 1

    def summary(self) -> dict[str, Any]:
        return {"ok": self.ok, "failed": self.failed, "worst_ms": round(self.worst_ms, 1)}


async def _http_live(port: int) -> bool:
    try:
        conn = await open_tcp(PROBE_ADDRESS, port)
    except OSError:
        return False
    assert conn.transport is not None
    conn.transport.write(b"GET /health/live HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
    try:
        head = await asyncio.wait_for(conn.head, 2.0)
    except (ConnectionError, TimeoutError):
        return False
    finally:
        conn.transport.abort()
    return head.startswith(b"HTTP/1.1 200")


async def _ws_ping(port: int, token: str | None = None) -> bool:
    conn = await ws_open(PROBE_ADDRESS, port, keep=True)
    if conn is None:
        return False
    assert conn.transport is not None
    try:
        calls = [("ping", {})] if token is None else [("authenticate", {"auth_token": token})]
        for method, params in calls:
            body = {"jsonrpc": "2.0", "method": method, "params": params, "id": 1}
            conn.send_text(json.dumps(body))
            ok = await _await_reply(conn, b'"result"', 2.0)
            if not ok:
                return False
        return True
    finally:
        conn.transport.abort()


async def _await_reply(conn: HostileConnection, marker: bytes, timeout: float) -> bool:
    """Wait until `marker` shows in what the server sent after the handshake."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and not conn.lost.done():
        if any(marker in text for text in conn.texts):
            return True
        await asyncio.sleep(0.01)
    return any(marker in text for text in conn.texts)


async def _probe_loop(
    deadline: float, every: float, check: Callable[[], Any], probe: Probe
) -> None:
    while time.monotonic() < deadline:
        started = time.perf_counter()
        try:
            ok = bool(await asyncio.wait_for(check(), 3.0))
        except (TimeoutError, OSError):
            ok = False
        probe.record(started, ok)
        await asyncio.sleep(every)


async def slowloris(args: argparse.Namespace, daemon: Daemon, log: Any) -> dict[str, Any]:
    stats = Lifetimes()
    peak = [0]
    held_peak = 0
    deadline = time.monotonic() + args.duration
    sources = _addresses("127.0.1.0", args.addresses)
    live, ws = Probe(), Probe()
    print(f"slowloris: {args.slow} connections for {args.duration:g} s", file=log, flush=True)
    tasks = [
        asyncio.create_task(
            _slow_client(sources[i % len(sources)], daemon.http_port, deadline, stats, peak)
        )
        for i in range(args.slow)
    ]
    tasks.append(
        asyncio.create_task(_probe_loop(deadline, 0.5, lambda: _http_live(daemon.http_port), live))
    )
    tasks.append(
        asyncio.create_task(_probe_loop(deadline, 0.5, lambda: _ws_ping(daemon.ws_port), ws))
    )
    while time.monotonic() < deadline:
        held_peak = max(held_peak, daemon.connections(daemon.http_port))
        await asyncio.sleep(1.0)
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "slow_connections": args.slow,
        "duration_s": args.duration,
        "daemon_fd_soft_limit": daemon.fd_soft_limit(),
        "held_by_daemon_peak": held_peak,
        "open_at_client_peak": peak[0],
        "health_live_probe": live.summary(),
        "websocket_ping_probe": ws.summary(),
        "accept_error_log_lines": daemon.count_lines("out of system resource"),
        "rss_peak_mb": round(daemon.rss_peak / 2**20, 1),
        **stats.summary(),
    }


async def _holder(source: str, port: int, deadline: float, stats: Lifetimes) -> None:
    while time.monotonic() < deadline:
        conn = await ws_open(source, port, answer_pings=True)
        if conn is None:
            stats.refused += 1
            await asyncio.sleep(0.5)
            continue
        assert conn.transport is not None
        stats.opened += 1
        opened = time.monotonic()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(conn.lost), max(0.0, deadline - opened))
        if conn.lost.done():
            stats.dropped.append(time.monotonic() - opened)
        else:
            conn.transport.abort()


async def slots(args: argparse.Namespace, daemon: Daemon, log: Any) -> dict[str, Any]:
    token = daemon.token("admin")
    stats = Lifetimes()
    deadline = time.monotonic() + args.duration
    sources = _addresses("127.0.3.0", args.addresses)
    admin = Probe()
    held_peak = 0
    print(f"slots: {args.holders} holders for {args.duration:g} s", file=log, flush=True)
    tasks = [
        asyncio.create_task(_holder(sources[i % len(sources)], daemon.ws_port, deadline, stats))
        for i in range(args.holders)
    ]
    await asyncio.sleep(min(3.0, args.duration / 4))  # let the holders fill the slots
    tasks.append(
        asyncio.create_task(
            _probe_loop(deadline, 0.5, lambda: _ws_ping(daemon.ws_port, token), admin)
        )
    )
    while time.monotonic() < deadline:
        held_peak = max(held_peak, daemon.connections(daemon.ws_port))
        await asyncio.sleep(1.0)
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "holders": args.holders,
        "duration_s": args.duration,
        "held_by_daemon_peak": held_peak,
        "admin_connect_and_authenticate": admin.summary(),
        "rss_peak_mb": round(daemon.rss_peak / 2**20, 1),
        **stats.summary(),
    }


RUNNERS = {"nonreading": nonreading, "slowloris": slowloris, "slots": slots}


def _parse_set(items: list[str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: expected key=value")
        overrides[key] = yaml.safe_load(raw)
    return overrides


async def run(args: argparse.Namespace, log: Any) -> dict[str, Any]:
    names = SCENARIOS if args.scenario == "all" else (args.scenario,)
    results: dict[str, Any] = {}
    for name in names:
        with tempfile.TemporaryDirectory(prefix="bench-abuse-") as tmp:
            daemon = Daemon(Path(tmp), _parse_set(args.set), args.nofile, args.rss_abort_mb)
            await daemon.start()
            try:
                result = await RUNNERS[name](args, daemon, log)
            finally:
                stop_s = await daemon.terminate()
            result["sigterm_exit_s"] = None if stop_s is None else round(stop_s, 2)
            results[name] = result
            print(json.dumps({name: result}), file=log, flush=True)
    return {
        "bench": "abuse",
        "config_overrides": _parse_set(args.set),
        "nofile": args.nofile,
        "results": results,
    }


def table(report: dict[str, Any]) -> str:
    rows = []
    for name, result in report["results"].items():
        for key, value in result.items():
            rows.append([name, key, json.dumps(value)])
    return format_table(["scenario", "figure", "value"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=(*SCENARIOS, "all"), default="all")
    parser.add_argument("--clients", type=positive_int, default=100, help="non-reading clients")
    parser.add_argument("--slow", type=positive_int, default=2000, help="slowloris connections")
    parser.add_argument("--holders", type=positive_int, default=1000, help="slot holders")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per scenario")
    parser.add_argument(
        "--addresses", type=positive_int, default=25, help="loopback source addresses used"
    )
    parser.add_argument("--nofile", type=positive_int, default=1024, help="daemon fd soft limit")
    parser.add_argument("--rss-abort-mb", type=positive_int, default=1500)
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="daemon config override"
    )
    add_json_option(parser)
    args = parser.parse_args()
    log = log_stream(args.json)
    report = asyncio.run(run(args, log))
    publish(report, table(report), args.json)


if __name__ == "__main__":
    main()
