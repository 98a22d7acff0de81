"""RPC throughput: the daemon's JSON-RPC path against a bare `websockets` server.

One run starts three servers in this process, on 127.0.0.1 with ephemeral ports, on the
default asyncio loop (what the daemon uses; no uvloop):

- bare:          a `websockets` server whose handler parses each frame and answers `pong`
- ours:          the daemon, an in-process `camera_service.app.Application`
- jsonrpcserver: the same bare server dispatching through `jsonrpcserver.async_dispatch`
                 with its defaults (jsonschema validation of every request)

and drives each with the same load from a separate process (bench/common.py): `--connections`
concurrent connections, each authenticating with an API key and then making `--calls`
sequential `ping` calls. Servers are measured interleaved (bare, ours, jsonrpcserver) for
`--rounds` rounds after a short warm-up; the report is the median per server.

The daemon keeps its per-connection rate limit *enabled* with a bucket large enough
(100000/s, burst 100000) never to refuse a call, so the token bucket's cost is measured.

    python -m bench.rpc_throughput                       # 50 × 400 × 5 rounds, 25-60 s
    python -m bench.rpc_throughput --json results.json   # also write the figures as JSON
    python -m bench.rpc_throughput --json                # JSON on stdout, table on stderr
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

from websockets.asyncio.server import Server, ServerConnection, serve

from bench.common import (
    CLIENTS,
    LoadJob,
    LoadResult,
    LoadWorker,
    add_json_option,
    add_loop_option,
    format_table,
    log_stream,
    median,
    positive_int,
    publish,
    run_on_loop,
)
from camera_service.eventloop import running_loop_name

HOST = "127.0.0.1"
PATH = "/ws"
SERVERS = ("bare", "ours", "jsonrpcserver")
TARGET_RATIO = 0.80
TARGET_P99_MS = 10.0
RATE_LIMIT = {"enabled": True, "per_second": 100000, "burst": 100000}
MICRO_ITERATIONS = 4000
LOAD_BOUND_CPU = 0.85  # load process CPU share above which a server's req/s is a lower bound
PING = '{"jsonrpc":"2.0","method":"ping","id":1}'

# Same transport options as the daemon's WebSocketServer, so only dispatch differs.
SERVE_OPTIONS: dict[str, Any] = {
    "max_size": 1 << 20,
    "ping_interval": 20.0,
    "ping_timeout": 20.0,
    "compression": None,
    "server_header": None,
}


# --- the comparison servers --------------------------------------------------------------------


async def _bare_handler(connection: ServerConnection) -> None:
    async for frame in connection:
        request = json.loads(frame)
        result: Any = "pong" if request.get("method") == "ping" else {"authenticated": True}
        await connection.send(json.dumps({"jsonrpc": "2.0", "result": result, "id": request["id"]}))


def _jsonrpcserver_handler() -> Callable[[ServerConnection], Awaitable[None]]:
    from jsonrpcserver import Result, Success, async_dispatch

    async def ping() -> Result:
        return Success("pong")

    async def authenticate(auth_token: str) -> Result:
        return Success({"authenticated": True})

    methods = {"ping": ping, "authenticate": authenticate}

    async def handler(connection: ServerConnection) -> None:
        async for frame in connection:
            text = frame if isinstance(frame, str) else frame.decode()
            response = await async_dispatch(text, methods=methods)
            if response:
                await connection.send(response)

    return handler


async def start_server(handler: Callable[[ServerConnection], Awaitable[None]]) -> Server:
    return await serve(handler, HOST, 0, **SERVE_OPTIONS)


def server_port(server: Server) -> int:
    return int(server.sockets[0].getsockname()[1])


def daemon_config(tmp: Path) -> dict[str, Any]:
    """Like tests/support/daemon.py's base config, with the bench's rate limit."""
    return {
        "server": {"host": HOST, "port": 0, "rate_limit": RATE_LIMIT},
        "http": {"host": HOST, "port": 0},
        "storage": {
            "recordings_dir": str(tmp / "recordings"),
            "snapshots_dir": str(tmp / "snapshots"),
            "state_dir": str(tmp / "state"),
        },
        "cameras": {"discovery": "off"},
        "mediamtx": {"enabled": False},
        "logging": {"level": "WARNING", "format": "json"},
    }


# --- per-request CPU cost, in process --------------------------------------------------------


async def _per_call_us(call: Callable[[], Awaitable[Any]], iterations: int) -> float:
    """µs one awaited call costs: the best of 5 batches after a warm-up batch (the minimum
    is the figure least disturbed by other load on the machine)."""
    batch = max(1, iterations // 5)
    samples = []
    for _ in range(6):
        started = time.perf_counter()
        for _ in range(batch):
            await call()
        samples.append((time.perf_counter() - started) / batch * 1e6)
    return round(min(samples[1:]), 2)


async def micro_costs(app: Any, api_key: str, iterations: int) -> dict[str, float]:
    """What dispatching one ping costs without any transport: the brief's ~190 µs claim."""
    from jsonrpcserver import Result, Success, async_dispatch
    from jsonrpcserver.main import default_validator

    from camera_service.rpc import protocol
    from camera_service.rpc.session import Session, TokenBucket

    async def ping() -> Result:
        return Success("pong")

    methods = {"ping": ping}
    request = json.loads(PING)

    async def validate() -> None:
        default_validator(request)

    async def jrs_default() -> None:
        await async_dispatch(PING, methods=methods)

    async def jrs_unvalidated() -> None:
        await async_dispatch(PING, methods=methods, validator=lambda value: value)

    async def ours_parse() -> None:
        protocol.parse(PING, 50)

    session = Session("127.0.0.1", 16, TokenBucket(RATE_LIMIT["per_second"], RATE_LIMIT["burst"]))
    session.identity = app.authenticator.verify(api_key)

    async def ours_dispatch() -> None:
        await app.dispatcher.handle_frame(session, PING)

    return {
        "jsonschema_validate_us": await _per_call_us(validate, iterations),
        "jsonrpcserver_dispatch_us": await _per_call_us(jrs_default, iterations),
        "jsonrpcserver_dispatch_novalidate_us": await _per_call_us(jrs_unvalidated, iterations),
        "ours_parse_us": await _per_call_us(ours_parse, iterations),
        "ours_dispatch_us": await _per_call_us(ours_dispatch, iterations),
    }


# --- the run -------------------------------------------------------------------------------------


def summarize(results: dict[str, list[LoadResult]]) -> dict[str, Any]:
    servers: dict[str, Any] = {}
    for name, runs in results.items():
        servers[name] = {
            key: round(median([_field(r, key) for r in runs]), 3)
            for key in (
                "req_per_s",
                "p50_ms",
                "p95_ms",
                "p99_ms",
                "server_cpu",
                "client_cpu",
                "server_us_per_call",
            )
        }
        servers[name]["errors"] = sum(r.errors for r in runs)
        servers[name]["rounds"] = [r.as_dict() for r in runs]
    bare = servers["bare"]
    ratios = {
        f"{name}/bare": round(servers[name]["req_per_s"] / bare["req_per_s"], 3)
        if bare["req_per_s"]
        else 0.0
        for name in SERVERS
        if name != "bare"
    }
    cpu_ratios = {
        f"{name}/bare": round(bare["server_us_per_call"] / servers[name]["server_us_per_call"], 3)
        if servers[name]["server_us_per_call"]
        else 0.0
        for name in SERVERS
        if name != "bare"
    }
    ours = servers["ours"]
    return {
        "servers": servers,
        "ratios": ratios,
        "cpu_ratios": cpu_ratios,
        "load_bound": [name for name in SERVERS if servers[name]["client_cpu"] >= LOAD_BOUND_CPU],
        "target": {
            "ratio_min": TARGET_RATIO,
            "p99_max_ms": TARGET_P99_MS,
            "ratio_met": ratios["ours/bare"] >= TARGET_RATIO,
            "p99_met": ours["p99_ms"] < TARGET_P99_MS,
        },
    }


def _field(result: LoadResult, key: str) -> float:
    if key in result.latency:
        return float(result.latency[key])
    return float(getattr(result, key))


async def _closing_server(server: Server) -> None:
    server.close()
    await server.wait_closed()


async def run_benchmark(args: argparse.Namespace, log: TextIO) -> dict[str, Any]:
    from camera_service.app import Application
    from camera_service.auth.roles import Role
    from camera_service.config import build_config

    results: dict[str, list[LoadResult]] = {name: [] for name in SERVERS}
    profiler = cProfile.Profile() if args.profile else None
    started = time.perf_counter()
    load_average = [round(value, 2) for value in os.getloadavg()]
    async with contextlib.AsyncExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-rpc-"))
        app = Application(build_config(daemon_config(Path(tmp))))
        await app.start()
        stack.push_async_callback(app.stop)
        bare = await start_server(_bare_handler)
        stack.push_async_callback(_closing_server, bare)
        jrs = await start_server(_jsonrpcserver_handler())
        stack.push_async_callback(_closing_server, jrs)
        worker = await LoadWorker.start()
        stack.push_async_callback(worker.close)

        api_key, _ = app.keys.create("bench", Role.VIEWER)
        micro = await micro_costs(app, api_key, args.micro_iterations)
        targets = {
            "bare": (server_port(bare), PATH),
            "ours": (app.ws.port, app.config.server.path),
            "jsonrpcserver": (server_port(jrs), PATH),
        }

        def job(name: str, calls: int) -> LoadJob:
            port, path = targets[name]
            return LoadJob(
                host=HOST,
                port=port,
                path=path,
                connections=args.connections,
                calls=calls,
                token=api_key,
                client=args.client,
            )

        for name in SERVERS:  # warm-up: connections, caches, branch predictors
            await worker.run(job(name, min(args.calls, 50)))
        for round_no in range(1, args.rounds + 1):
            for name in SERVERS:
                if profiler is not None and name == "ours":
                    profiler.enable()
                try:
                    result = await worker.run(job(name, args.calls))
                finally:
                    if profiler is not None:
                        profiler.disable()
                results[name].append(result)
                print(
                    f"round {round_no} {name:<13} {result.req_per_s:7.0f} req/s"
                    f"  p99 {result.latency['p99_ms']:6.2f} ms"
                    f"  server {result.server_us_per_call:5.1f} µs/call"
                    f"  CPU server {result.server_cpu:4.0%} load {result.client_cpu:4.0%}",
                    file=log,
                    flush=True,
                )
    if profiler is not None:
        profiler.dump_stats(args.profile)
        print(f"cProfile of the daemon's runs written to {args.profile}", file=log)
    report = summarize(results)
    report["micro_us"] = micro
    report["config"] = {
        "connections": args.connections,
        "calls_per_connection": args.calls,
        "rounds": args.rounds,
        "client": args.client,
        "method": "ping (after authenticate with an API key)",
        "rate_limit": RATE_LIMIT,
        "loop": running_loop_name(),
        "python": platform.python_version(),
        "websockets": metadata.version("websockets"),
        "jsonrpcserver": metadata.version("jsonrpcserver"),
        "cpus": _cpu_count(),
        "load_average_at_start": load_average,
        "duration_s": round(time.perf_counter() - started, 1),
    }
    return report


def _cpu_count() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 0


def render(report: dict[str, Any]) -> str:
    rows = []
    for name in SERVERS:
        s = report["servers"][name]
        rows.append(
            [
                name,
                f"{s['req_per_s']:.0f}",
                f"{s['p50_ms']:.2f}",
                f"{s['p95_ms']:.2f}",
                f"{s['p99_ms']:.2f}",
                f"{s['server_us_per_call']:.1f}",
                f"{s['server_cpu']:.0%}",
                f"{s['client_cpu']:.0%}",
            ]
        )
    cfg = report["config"]
    table = format_table(
        ["server", "req/s", "p50 ms", "p95 ms", "p99 ms", "srv µs/call", "srv CPU", "load CPU"],
        rows,
    )
    ratios = "  ".join(f"{key} = {value:.2f}" for key, value in report["ratios"].items())
    cpu_ratios = "  ".join(f"{key} = {value:.2f}" for key, value in report["cpu_ratios"].items())
    target = report["target"]
    micro = "  ".join(f"{key} {value}" for key, value in report["micro_us"].items())
    lines = [
        f"{cfg['connections']} connections x {cfg['calls_per_connection']} pings, "
        f"median of {cfg['rounds']} round(s), {cfg['client']} client, "
        f"{cfg['cpus']} CPUs, load average {cfg['load_average_at_start'][0]}, "
        f"{cfg['duration_s']} s",
        table,
        f"req/s ratios:      {ratios}",
        f"CPU/call ratios:   {cpu_ratios}  (bare µs/call ÷ server µs/call)",
        f"target ours/bare >= {target['ratio_min']}: "
        f"{'met' if target['ratio_met'] else 'NOT met'}; "
        f"ours p99 < {target['p99_max_ms']} ms: {'met' if target['p99_met'] else 'NOT met'}",
        f"in-process cost per ping, no transport (µs): {micro}",
    ]
    if report["load_bound"]:
        lines.append(
            f"note: the load process used >= {LOAD_BOUND_CPU:.0%} of a core against "
            f"{', '.join(report['load_bound'])}; those req/s are lower bounds"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.rpc_throughput",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument(
        "--connections", type=positive_int, default=50, help="concurrent connections"
    )
    parser.add_argument("--calls", type=positive_int, default=400, help="pings per connection")
    parser.add_argument("--rounds", type=positive_int, default=5, help="interleaved rounds")
    parser.add_argument(
        "--client", choices=CLIENTS, default="raw", help="load generator's WebSocket client"
    )
    add_json_option(parser)
    add_loop_option(parser)
    parser.add_argument(
        "--micro-iterations",
        type=positive_int,
        default=MICRO_ITERATIONS,
        help="iterations of the in-process per-call cost measurements",
    )
    parser.add_argument(
        "--profile", metavar="PATH", help="cProfile the daemon's runs into PATH (.pstats)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log = log_stream(args.json)
    report = run_on_loop(run_benchmark(args, log), args.loop)
    publish(report, render(report), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
