"""uvloop against asyncio's default loop, interleaved in one run.

Each round runs `bench.rpc_throughput` and `bench.hotplug_fanout` once per loop, alternating
the order of the loops from round to round, each bench as a child process with `--loop`
(so every run gets a fresh interpreter and the noise of the machine falls on both loops
alike). Reported: the medians per loop and the uvloop/asyncio ratios of the daemon's server
CPU per ping, req/s, ping p99, hot-plug fan-out p50/p99 and the daemon's CPU per hot-plug event.

    python -m bench.event_loop                  # 3 rounds, ~3-4 min
    python -m bench.event_loop --rounds 5 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from bench.common import (
    REPO_ROOT,
    format_table,
    median,
    positive_int,
    run_bench,
    subprocess_env,
)

LOOPS = ("asyncio", "uvloop")
RUN_TIMEOUT_S = 600.0


async def run_child(module: str, loop: str, extra: list[str]) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        "--loop",
        loop,
        "--json",
        "-",
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT,
        env=subprocess_env(),
    )
    out, err = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT_S)
    if proc.returncode != 0:
        raise RuntimeError(f"{module} --loop {loop} failed:\n{err.decode()[-2000:]}")
    report: dict[str, Any] = json.loads(out)
    return report


def rpc_figures(report: dict[str, Any]) -> dict[str, float]:
    ours = report["servers"]["ours"]
    return {
        "ping_server_us": float(ours["server_us_per_call"]),
        "ping_req_per_s": float(ours["req_per_s"]),
        "ping_p99_ms": float(ours["p99_ms"]),
    }


def fanout_figures(report: dict[str, Any]) -> dict[str, float]:
    return {
        "fanout_p50_ms": float(report["p50_ms"]),
        "fanout_p99_ms": float(report["p99_ms"]),
        "fanout_daemon_cpu_ms": float(report["plug"]["server_cpu"]["p50_ms"]),
    }


async def run(args: argparse.Namespace, log: Any) -> dict[str, Any]:
    samples: dict[str, dict[str, list[float]]] = {loop: {} for loop in LOOPS}
    for round_no in range(args.rounds):
        order = LOOPS if round_no % 2 == 0 else tuple(reversed(LOOPS))
        for loop in order:
            rpc = await run_child("bench.rpc_throughput", loop, ["--rounds", str(args.rpc_rounds)])
            fan = await run_child(
                "bench.hotplug_fanout",
                loop,
                ["--clients", str(args.clients), "--events", str(args.events)],
            )
            figures = rpc_figures(rpc) | fanout_figures(fan)
            for key, value in figures.items():
                samples[loop].setdefault(key, []).append(value)
            print(f"round {round_no + 1} {loop:<7} {json.dumps(figures)}", file=log, flush=True)
    medians = {loop: {k: median(v) for k, v in samples[loop].items()} for loop in LOOPS}
    ratios = {
        key: round(medians["uvloop"][key] / medians["asyncio"][key], 3)
        for key in medians["asyncio"]
        if medians["asyncio"][key]
    }
    return {
        "rounds": args.rounds,
        "config": {
            "rpc_rounds_per_run": args.rpc_rounds,
            "fanout_clients": args.clients,
            "fanout_events": args.events,
        },
        "samples": samples,
        "medians": medians,
        "ratios_uvloop_over_asyncio": ratios,
    }


def table(report: dict[str, Any]) -> str:
    medians, ratios = report["medians"], report["ratios_uvloop_over_asyncio"]
    rows = [
        [key, f"{medians['asyncio'][key]:.2f}", f"{medians['uvloop'][key]:.2f}", f"{value:.2f}"]
        for key, value in ratios.items()
    ]
    return f"median of {report['rounds']} interleaved rounds\n" + format_table(
        ["figure", "asyncio", "uvloop", "uvloop/asyncio"], rows
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--rounds", type=positive_int, default=3)
    parser.add_argument("--rpc-rounds", type=positive_int, default=3)
    parser.add_argument("--clients", type=positive_int, default=1000)
    parser.add_argument("--events", type=positive_int, default=30)
    return run_bench(parser, argv, run, table)


if __name__ == "__main__":
    raise SystemExit(main())
