"""What the daemon costs when nobody uses it: CPU over a window, RSS, and what start-up imports.

The daemon runs as a subprocess (`python -m camera_service run`, one lavfi camera configured,
MediaMTX off, no clients) so its figures are its own. After start-up settles, its CPU time
(user + system, psutil) is read over `--window` seconds (default 60), then RSS and USS. The
import profile (`python -X importtime -c "import camera_service.app"`, in a separate
interpreter) lists the modules with the largest cumulative import time, and the RSS of
importing the package alone.

    python -m bench.idle                  # 60 s window
    python -m bench.idle --window 10 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO

import psutil
import yaml

from bench.common import (
    REPO_ROOT,
    format_table,
    positive_int,
    run_bench,
    subprocess_env,
)
from bench.snapshot_latency import Daemon, daemon_config

TARGET_CPU_PERCENT = 0.5
SETTLE_S = 5.0
TOP_IMPORTS = 12
_IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)")


def import_profile() -> dict[str, Any]:
    """Top-level import cost of the package: cumulative µs per module, and the RSS it leaves."""
    probe = "import camera_service.app, psutil; print(psutil.Process().memory_info().rss)"
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", probe],
        cwd=REPO_ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    rows = []
    for line in result.stderr.splitlines():
        match = _IMPORT_LINE.match(line)
        if match:
            depth = len(match.group(3)) // 2
            rows.append((int(match.group(2)), depth, match.group(4)))
    top = sorted((r for r in rows if r[1] <= 1), reverse=True)[:TOP_IMPORTS]
    return {
        "import_rss_mb": round(int(result.stdout.strip()) / 2**20, 1),
        "top_cumulative_ms": [
            {"module": name, "ms": round(us / 1000, 1), "depth": depth} for us, depth, name in top
        ],
    }


async def idle_figures(window: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp_name:
        tmp = Path(tmp_name)
        config_file = tmp / "config.yaml"
        await asyncio.to_thread(config_file.write_text, yaml.safe_dump(daemon_config(tmp)))
        daemon = await Daemon.start(config_file, tmp / "daemon.log")
        try:
            process = psutil.Process(daemon.pid)
            await asyncio.sleep(SETTLE_S)
            before = process.cpu_times()
            await asyncio.sleep(window)
            after = process.cpu_times()
            used = (after.user + after.system) - (before.user + before.system)
            memory = process.memory_full_info()
            loop_line = next(
                (
                    line
                    for line in (tmp / "daemon.log").read_text().splitlines()
                    if "camera-service started" in line
                ),
                "",
            )
            loop = re.search(r'"event_loop": "(\w+)"', loop_line)
            return {
                "window_s": window,
                "cpu_seconds": round(used, 3),
                "cpu_percent": round(used / window * 100, 3),
                "rss_mb": round(memory.rss / 2**20, 1),
                "uss_mb": round(memory.uss / 2**20, 1),
                "threads": process.num_threads(),
                "children": len(process.children()),
                "event_loop": loop.group(1) if loop else "unknown",
            }
        finally:
            await daemon.stop()


async def run(args: argparse.Namespace, log: TextIO) -> dict[str, Any]:
    idle = await idle_figures(args.window)
    imports = await asyncio.to_thread(import_profile)
    return {
        "idle": idle,
        "imports": imports,
        "target_cpu_percent": TARGET_CPU_PERCENT,
        "cpu_target_met": idle["cpu_percent"] < TARGET_CPU_PERCENT,
    }


def table(report: dict[str, Any]) -> str:
    idle, imports = report["idle"], report["imports"]
    head = (
        f"idle over {idle['window_s']:g} s on {idle['event_loop']}: CPU {idle['cpu_percent']}% "
        f"of a core ({idle['cpu_seconds']} s), RSS {idle['rss_mb']} MB, USS {idle['uss_mb']} MB, "
        f"{idle['threads']} threads, {idle['children']} children; "
        f"import camera_service.app alone: {imports['import_rss_mb']} MB RSS"
    )
    rows = [[r["module"], f"{r['ms']:.1f}"] for r in imports["top_cumulative_ms"]]
    return head + "\n" + format_table(["module (import, cumulative)", "ms"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--window", type=positive_int, default=60, help="seconds of idle CPU")
    return run_bench(parser, argv, run, table)


if __name__ == "__main__":
    raise SystemExit(main())
