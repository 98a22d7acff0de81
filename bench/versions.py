"""This checkout's daemon against an earlier commit's, in one run.

Both daemons run as subprocesses (`python -m camera_service run`, 127.0.0.1, ephemeral ports,
one lavfi camera configured, MediaMTX off) from the same interpreter: the baseline from a
temporary `git worktree` of `--baseline` (default: the first commit of this round's work,
11ab767), the current one from this checkout. One load process (bench/common.py) drives both
with the same jobs, interleaved round by round (the order alternates), so the machine's noise
falls on both alike. Server CPU per call comes from each daemon's own CPU time (psutil) over
the timed phase of its job.

Jobs: `ping` over 50 connections x 400 calls and `get_camera_list` over 10 connections x 400
calls, each authenticated with a viewer API key made by that daemon's own CLI. Reported per
job: medians of req/s, p50/p99 and server µs per call for each side, and current/baseline
ratios (the target of issue 16 is CPU per call <= 0.8).

    python -m bench.versions                          # 5 rounds, ~1-2 min
    python -m bench.versions --baseline HEAD~3 --rounds 7 --json out.json
    python -m bench.versions --loop asyncio           # the current daemon on asyncio's loop
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import yaml

from bench.common import (
    REPO_ROOT,
    LoadJob,
    LoadWorker,
    format_table,
    median,
    positive_int,
    run_bench,
)
from bench.snapshot_latency import Daemon, daemon_config

HOST = "127.0.0.1"
DEFAULT_BASELINE = "11ab767"
JOBS = {"ping": (50, '"pong"'), "get_camera_list": (10, '"cameras"')}
TARGET_CPU_RATIO = 0.8
SIDES = ("baseline", "current")


@dataclass
class Side:
    name: str
    root: Path
    daemon: Daemon
    port: int
    token: str
    process: psutil.Process


def make_key(root: Path, config_file: Path) -> str:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "camera_service",
            "--config",
            str(config_file),
            "keys",
            "create",
            "--role",
            "viewer",
            "--name",
            "bench",
        ],
        cwd=root,
        env=_env(root),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for word in result.stdout.split():
        if word.startswith("csk_"):
            return word
    raise RuntimeError(f"no API key in the CLI's output: {result.stdout[:300]}")


def _env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root)
    return env


def _git_worktree(*args: str) -> None:
    subprocess.run(
        ["git", "worktree", *args], cwd=REPO_ROOT, check=True, capture_output=True, timeout=120
    )


@contextlib.asynccontextmanager
async def baseline_tree(ref: str) -> AsyncIterator[Path]:
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as tmp:
        tree = Path(tmp) / "tree"
        await asyncio.to_thread(_git_worktree, "add", "--detach", "-q", str(tree), ref)
        try:
            yield tree
        finally:
            await asyncio.to_thread(_git_worktree, "remove", "--force", str(tree))


async def start_side(name: str, root: Path, tmp: Path, loop: str | None) -> Side:
    await asyncio.to_thread(tmp.mkdir)
    raw = daemon_config(tmp)
    # The token bucket stays on (its cost is part of a call) but never refuses a call here.
    raw["server"]["rate_limit"] = {"enabled": True, "per_second": 100000, "burst": 100000}
    if loop is not None:
        raw["server"]["event_loop"] = loop
    config_file = tmp / "config.yaml"
    await asyncio.to_thread(config_file.write_text, yaml.safe_dump(raw))
    token = await asyncio.to_thread(make_key, root, config_file)
    daemon = await Daemon.start(config_file, tmp / "daemon.log", root=root)
    port = int(daemon.ws_url.rsplit(":", 1)[1].split("/", 1)[0])
    return Side(name, root, daemon, port, token, psutil.Process(daemon.pid))


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def measure(worker: LoadWorker, side: Side, method: str, calls: int) -> dict[str, float]:
    connections, expect = JOBS[method]
    job = LoadJob(HOST, side.port, "/ws", connections, calls, side.token, method, expect)
    cpu0 = _cpu(side.process)
    result = await worker.run(job)
    cpu = _cpu(side.process) - cpu0
    if result.errors:
        raise RuntimeError(f"{side.name} {method}: {result.errors} unexpected replies")
    # The daemon's CPU over the whole job (connect + authenticate + calls) divided by the calls:
    # the connect phase is the same for both sides and small next to the calls.
    return {
        "req_per_s": result.req_per_s,
        "p50_ms": result.latency["p50_ms"],
        "p99_ms": result.latency["p99_ms"],
        "server_us_per_call": cpu / result.calls * 1e6,
    }


async def run(args: argparse.Namespace, log: Any) -> dict[str, Any]:
    samples: dict[str, dict[str, dict[str, list[float]]]] = {
        method: {side: {} for side in SIDES} for method in JOBS
    }
    async with baseline_tree(args.baseline) as tree:
        with tempfile.TemporaryDirectory(prefix="bench-versions-") as tmp_name:
            tmp = Path(tmp_name)
            sides = {
                "baseline": await start_side("baseline", tree, tmp / "baseline", None),
                "current": await start_side("current", REPO_ROOT, tmp / "current", args.loop),
            }
            worker = await LoadWorker.start()
            try:
                for side in sides.values():  # warm-up
                    for method in JOBS:
                        await measure(worker, side, method, 50)
                for round_no in range(args.rounds):
                    order = SIDES if round_no % 2 == 0 else tuple(reversed(SIDES))
                    for method in JOBS:
                        for name in order:
                            figures = await measure(worker, sides[name], method, args.calls)
                            for key, value in figures.items():
                                samples[method][name].setdefault(key, []).append(value)
                            print(
                                f"round {round_no + 1} {method:<16} {name:<8} "
                                f"{figures['req_per_s']:8.0f} req/s "
                                f"{figures['server_us_per_call']:6.1f} µs/call "
                                f"p99 {figures['p99_ms']:.2f} ms",
                                file=log,
                                flush=True,
                            )
            finally:
                await worker.close()
                for side in sides.values():
                    await side.daemon.stop()
    medians = {
        method: {side: {k: median(v) for k, v in per.items()} for side, per in by_side.items()}
        for method, by_side in samples.items()
    }
    ratios = {
        method: {
            key: round(m["current"][key] / m["baseline"][key], 3)
            for key in m["baseline"]
            if m["baseline"][key]
        }
        for method, m in medians.items()
    }
    return {
        "baseline": args.baseline,
        "rounds": args.rounds,
        "calls_per_connection": args.calls,
        "current_loop": args.loop or "config default",
        "medians": medians,
        "ratios_current_over_baseline": ratios,
        "target_cpu_ratio": TARGET_CPU_RATIO,
    }


def table(report: dict[str, Any]) -> str:
    rows = []
    for method, m in report["medians"].items():
        ratio = report["ratios_current_over_baseline"][method]
        for key in ("server_us_per_call", "req_per_s", "p50_ms", "p99_ms"):
            rows.append(
                [
                    method,
                    key,
                    f"{m['baseline'][key]:.2f}",
                    f"{m['current'][key]:.2f}",
                    # no ratio when the baseline figure is 0 (CPU time counts in 10 ms ticks)
                    f"{ratio[key]:.2f}" if key in ratio else "n/a",
                ]
            )
    head = (
        f"current vs {report['baseline']}, median of {report['rounds']} interleaved rounds, "
        f"current loop: {report['current_loop']}"
    )
    return head + "\n" + format_table(["job", "figure", "baseline", "current", "ratio"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help="git ref of the baseline")
    parser.add_argument("--rounds", type=positive_int, default=5)
    parser.add_argument("--calls", type=positive_int, default=400)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default=None)
    return run_bench(parser, argv, run, table)


if __name__ == "__main__":
    raise SystemExit(main())
