"""Idle authenticated connections: the daemon's memory per connection and its ping latency.

The daemon runs as a subprocess (`python -m camera_service run`, 127.0.0.1, ephemeral ports,
one lavfi camera configured, MediaMTX off) so its RSS is its own. A holder process (this
module with `--hold`) opens authenticated connections in steps (`--steps`, default 1000, 5000,
10000, 20000) with the bench's light RFC 6455 client and keeps them open, answering the
daemon's keepalive pings. After each step the parent waits for the daemon's RSS to settle,
records it, then opens one more connection itself and times `--pings` sequential `ping` calls.

Reported per step: RSS, USS, KB per connection since the empty daemon and since the previous
step (the knee shows there), ping p50/p99, and the daemon's idle CPU while only the held
connections are open. Both processes raise their fd limits (root can raise the hard limit;
otherwise steps above the limit are skipped with the reason).

    python -m bench.connections                         # 1k/5k/10k/20k, ~1-2 min
    python -m bench.connections --steps 1000,10000      # chosen steps
    python -m bench.connections --loop uvloop           # the daemon on uvloop
    python -m bench.connections --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import yaml

from bench.common import (
    REPO_ROOT,
    RawConnection,
    format_table,
    latency_summary_ms,
    positive_int,
    run_bench,
    subprocess_env,
)
from bench.snapshot_latency import Daemon, daemon_config
from camera_service.auth.api_keys import ApiKeyStore
from camera_service.auth.roles import Role
from camera_service.config import build_config

HOST = "127.0.0.1"
DEFAULT_STEPS = (1000, 5000, 10000, 20000)
TARGET_KB_PER_CONNECTION = 10.0
TARGET_PING_P99_MS = 50.0
SETTLE_TIMEOUT_S = 30.0
SETTLE_TOLERANCE = 256 * 1024  # RSS change (bytes) per second below which it has settled
IDLE_WINDOW_S = 5.0
OPEN_BATCH = 200  # connections the holder opens concurrently
FD_HEADROOM = 1024


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's RLIMIT_NOFILE towards `wanted`; answer the soft limit reached."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    for new_hard in (max(hard, wanted), hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, new_hard), new_hard))
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _auth_frame(token: str) -> str:
    return json.dumps(
        {"jsonrpc": "2.0", "method": "authenticate", "params": {"auth_token": token}, "id": 0}
    )


# --- the holder process --------------------------------------------------------------------------


async def _open_authenticated(port: int, token: str) -> RawConnection:
    connection = await RawConnection.open(HOST, port, "/ws")
    reply = await asyncio.wait_for(connection.call(_auth_frame(token)), 30)
    if '"result"' not in reply:
        await connection.close()
        raise RuntimeError(f"authenticate failed: {reply[:200]}")
    return connection


async def _hold(port: int, token: str) -> None:
    held: list[RawConnection] = []
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        target = int(line)
        started = time.perf_counter()
        while len(held) < target:
            batch = min(OPEN_BATCH, target - len(held))
            held += await asyncio.gather(*(_open_authenticated(port, token) for _ in range(batch)))
        lost = sum(1 for conn in held if conn.protocol.closed.done())
        report = {"held": len(held), "lost": lost, "open_s": time.perf_counter() - started}
        sys.stdout.write(json.dumps(report) + "\n")
        sys.stdout.flush()
    await asyncio.gather(*(conn.close() for conn in held), return_exceptions=True)


def hold_main(port: int, token: str) -> None:
    raise_fd_limit(max(DEFAULT_STEPS) + FD_HEADROOM)
    asyncio.run(_hold(port, token))


class Holder:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, port: int, token: str) -> Holder:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.connections",
            "--hold",
            str(port),
            token,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=REPO_ROOT,
            env=subprocess_env(),
        )
        return cls(proc)

    async def hold(self, total: int, timeout: float) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{total}\n".encode())
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise RuntimeError("the holder process exited (see its stderr)")
        report: dict[str, Any] = json.loads(line)
        return report

    async def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 60)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


# --- the parent -----------------------------------------------------------------------------------


async def settled_rss(process: psutil.Process) -> int:
    """RSS once it changes by less than SETTLE_TOLERANCE over one second (bounded wait)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    previous = process.memory_info().rss
    while True:
        await asyncio.sleep(1.0)
        current = process.memory_info().rss
        if abs(current - previous) < SETTLE_TOLERANCE or time.monotonic() > deadline:
            return current
        previous = current


def idle_cpu_percent(process: psutil.Process, window: float) -> float:
    before = process.cpu_times()
    time.sleep(window)
    after = process.cpu_times()
    used = (after.user + after.system) - (before.user + before.system)
    return used / window * 100.0


async def ping_latency(port: int, token: str, pings: int) -> dict[str, float]:
    connection = await _open_authenticated(port, token)
    try:
        samples: list[int] = []
        for call_id in range(1, pings + 1):
            sent = time.perf_counter_ns()
            reply = await asyncio.wait_for(
                connection.call(f'{{"jsonrpc":"2.0","method":"ping","id":{call_id}}}'), 30
            )
            samples.append(time.perf_counter_ns() - sent)
            if '"pong"' not in reply:
                raise RuntimeError(f"ping answered {reply[:200]}")
        return latency_summary_ms(samples)
    finally:
        await connection.close()


def bench_config(tmp: Path, loop: str, max_connections: int) -> dict[str, Any]:
    config = daemon_config(tmp)
    config["server"]["max_connections"] = max_connections
    # Every held connection comes from one loopback address: lift the per-address caps
    # (they guard against one hostile host; see bench/abuse.py for what they do).
    config["server"]["max_connections_per_address"] = max_connections
    config["server"]["max_unauthenticated_per_address"] = OPEN_BATCH * 2
    config["server"]["reserved_slots"] = 0
    # Sequential pings on the probe connection stay under the token bucket (its cost stays).
    config["server"]["rate_limit"] = {"enabled": True, "per_second": 100000, "burst": 100000}
    if loop != "default":
        config["server"]["event_loop"] = loop
    return config


async def run(args: argparse.Namespace, log: Any) -> dict[str, Any]:
    steps = sorted(args.steps)
    limit = raise_fd_limit(max(steps) + FD_HEADROOM)
    feasible = [n for n in steps if n + FD_HEADROOM <= limit]
    skipped = [n for n in steps if n not in feasible]
    if skipped:
        print(f"skipping steps {skipped}: fd limit {limit}", file=log)
    with tempfile.TemporaryDirectory(prefix="bench-connections-") as tmp_name:
        tmp = Path(tmp_name)
        raw = bench_config(tmp, args.loop, max(steps) + 10)
        (tmp / "config.yaml").write_text(yaml.safe_dump(raw))
        config = build_config(raw)
        config.storage.state_dir.mkdir(parents=True, mode=0o700)
        token, _ = ApiKeyStore(config.api_keys_file).create("bench", Role.VIEWER)
        daemon = await Daemon.start(tmp / "config.yaml", tmp / "daemon.log")
        holder: Holder | None = None
        try:
            process = psutil.Process(daemon.pid)
            port = int(daemon.ws_url.rsplit(":", 1)[1].split("/", 1)[0])
            base_rss = await settled_rss(process)
            base_idle = await asyncio.to_thread(idle_cpu_percent, process, args.idle_window)
            rows: list[dict[str, Any]] = []
            holder = await Holder.start(port, token)
            previous_n, previous_rss = 0, base_rss
            for n in feasible:
                held = await holder.hold(n, timeout=300)
                rss = await settled_rss(process)
                idle = await asyncio.to_thread(idle_cpu_percent, process, args.idle_window)
                latency = await ping_latency(port, token, args.pings)
                rows.append(
                    {
                        "connections": n,
                        "lost": held["lost"],
                        "open_s": round(held["open_s"], 2),
                        "rss_mb": round(rss / 2**20, 1),
                        "uss_mb": round(process.memory_full_info().uss / 2**20, 1),
                        "kb_per_conn": round((rss - base_rss) / n / 1024, 2),
                        "kb_per_conn_step": round(
                            (rss - previous_rss) / (n - previous_n) / 1024, 2
                        ),
                        "idle_cpu_pct": round(idle, 2),
                        "ping_p50_ms": latency["p50_ms"],
                        "ping_p99_ms": latency["p99_ms"],
                    }
                )
                print(json.dumps(rows[-1]), file=log)
                previous_n, previous_rss = n, rss
        finally:
            if holder is not None:
                await holder.close()
            await daemon.stop()
    return {
        "loop": args.loop,
        "python": sys.version.split()[0],
        "base_rss_mb": round(base_rss / 2**20, 1),
        "base_idle_cpu_pct": round(base_idle, 2),
        "skipped_steps": skipped,
        "steps": rows,
        "targets": {
            "kb_per_conn": TARGET_KB_PER_CONNECTION,
            "ping_p99_ms": TARGET_PING_P99_MS,
        },
    }


def table(report: dict[str, Any]) -> str:
    headers = [
        "conns",
        "RSS MB",
        "USS MB",
        "KB/conn",
        "KB/conn step",
        "idle CPU %",
        "p50 ms",
        "p99 ms",
        "lost",
    ]
    rows = [
        [
            str(row["connections"]),
            f"{row['rss_mb']:.1f}",
            f"{row['uss_mb']:.1f}",
            f"{row['kb_per_conn']:.2f}",
            f"{row['kb_per_conn_step']:.2f}",
            f"{row['idle_cpu_pct']:.2f}",
            f"{row['ping_p50_ms']:.2f}",
            f"{row['ping_p99_ms']:.2f}",
            str(row["lost"]),
        ]
        for row in report["steps"]
    ]
    head = (
        f"loop {report['loop']}; empty daemon {report['base_rss_mb']} MB RSS, "
        f"{report['base_idle_cpu_pct']}% CPU idle"
    )
    return head + "\n" + format_table(headers, rows)


def _steps(text: str) -> list[int]:
    return [positive_int(part) for part in text.split(",") if part]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--hold"]:
        hold_main(int(argv[1]), argv[2])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--steps", type=_steps, default=list(DEFAULT_STEPS))
    parser.add_argument("--pings", type=positive_int, default=500)
    parser.add_argument("--loop", choices=("default", "asyncio", "uvloop"), default="default")
    parser.add_argument(
        "--idle-window", type=float, default=IDLE_WINDOW_S, help="seconds of idle CPU sampling"
    )
    return run_bench(parser, argv, run, table)


if __name__ == "__main__":
    raise SystemExit(main())
