"""What the daemon costs when nobody uses it: CPU over a window, RSS, and what start-up imports.

The daemon runs as a subprocess (`python -m camera_service run`, one lavfi camera configured,
MediaMTX off, no clients) so its figures are its own. With `--mediamtx` it runs as most nodes
do: a real MediaMTX (`mediamtx` on PATH, every listener on a free 127.0.0.1 port) with stream
access control (`authMethod: http` pointing at the daemon), and the window starts once the
daemon reports MediaMTX healthy. After start-up settles, its CPU time
(user + system, psutil) is read over `--window` seconds (default 60), then RSS and USS. The
import profile (`python -X importtime -c "import camera_service.app"`, in a separate
interpreter) lists the modules with the largest cumulative import time, and the RSS of
importing the package alone.

    python -m bench.idle                  # 60 s window
    python -m bench.idle --window 10 --json out.json
    python -m bench.idle --window 60 --mediamtx   # with a real MediaMTX and stream auth
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import psutil
import yaml

from bench.common import (
    REPO_ROOT,
    format_table,
    positive_int,
    run_bench,
    subprocess_env,
)
from bench.snapshot_latency import HOST, BenchError, Daemon, daemon_config
from tests.support.stream_auth_stack import Ports, free_port, mediamtx_yaml

TARGET_CPU_PERCENT = 0.5
TARGET_RSS_MB = 47.0  # the seed server's idle RSS (issue 16)
SETTLE_S = 5.0
MEDIAMTX_TIMEOUT_S = 30.0
TOP_IMPORTS = 12
_IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)")


def import_profile() -> dict[str, Any]:
    """Top-level import cost of the package: cumulative µs per module, and the RSS it leaves."""
    # /proc rather than psutil: the daemon imports psutil only at its first usage report
    probe = (
        "import camera_service.app\n"
        "for line in open('/proc/self/status'):\n"
        "    if line.startswith('VmRSS:'): print(int(line.split()[1]) * 1024)"
    )
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


def mediamtx_daemon_config(tmp: Path, ports: Ports, http_port: int) -> dict[str, Any]:
    config = daemon_config(tmp)
    config["http"]["port"] = http_port
    config["mediamtx"] = {
        "enabled": True,
        "api_url": f"http://{HOST}:{ports.api}",
        "public_host": HOST,
        "rtsp_port": ports.rtsp,
        "hls_port": ports.hls,
        "webrtc_port": ports.webrtc,
        "stream_auth": True,
    }
    return config


@contextlib.asynccontextmanager
async def real_mediamtx(tmp: Path, ports: Ports, http_port: int) -> AsyncIterator[None]:
    """MediaMTX asking the daemon's POST /mediamtx/auth; its output goes to a file."""
    conf = tmp / "mediamtx.yml"
    auth = f"http://{HOST}:{http_port}/mediamtx/auth"
    await asyncio.to_thread(conf.write_text, yaml.safe_dump(mediamtx_yaml(ports, auth)))
    with (tmp / "mediamtx.log").open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            "mediamtx", str(conf), cwd=tmp, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()


async def wait_mediamtx_healthy(http_port: int) -> None:
    """Until the daemon's /health/mediamtx says healthy (it probes on its own schedule)."""
    url = f"http://{HOST}:{http_port}/health/mediamtx"
    async with aiohttp.ClientSession() as http, asyncio.timeout(MEDIAMTX_TIMEOUT_S):
        while True:
            async with http.get(url) as response:
                if (await response.json()).get("status") == "healthy":
                    return
            await asyncio.sleep(0.5)  # polling the daemon's probe result, bounded above


async def idle_figures(window: float, with_mediamtx: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp_name:
        tmp = Path(tmp_name)
        config_file = tmp / "config.yaml"
        ports, http_port = Ports.pick(), free_port()
        config = (
            mediamtx_daemon_config(tmp, ports, http_port) if with_mediamtx else daemon_config(tmp)
        )
        await asyncio.to_thread(config_file.write_text, yaml.safe_dump(config))
        async with contextlib.AsyncExitStack() as stack:
            if with_mediamtx:
                await stack.enter_async_context(real_mediamtx(tmp, ports, http_port))
            daemon = await Daemon.start(config_file, tmp / "daemon.log")
            stack.push_async_callback(daemon.stop)
            if with_mediamtx:
                await wait_mediamtx_healthy(http_port)
            figures = await measure(daemon, tmp / "daemon.log", window, with_mediamtx)
    return figures


async def measure(
    daemon: Daemon, log_path: Path, window: float, with_mediamtx: bool
) -> dict[str, Any]:
    """CPU over `window` after `SETTLE_S`, then memory, of the running daemon."""
    process = psutil.Process(daemon.pid)
    await asyncio.sleep(SETTLE_S)
    before = process.cpu_times()
    await asyncio.sleep(window)
    after = process.cpu_times()
    used = (after.user + after.system) - (before.user + before.system)
    memory = process.memory_full_info()
    log_text = await asyncio.to_thread(log_path.read_text)
    start_line = next((ln for ln in log_text.splitlines() if "camera-service started" in ln), "")
    loop = re.search(r'"event_loop": "(\w+)"', start_line)
    return {
        "window_s": window,
        "mediamtx": with_mediamtx,
        "cpu_seconds": round(used, 3),
        "cpu_percent": round(used / window * 100, 3),
        "rss_mb": round(memory.rss / 2**20, 1),
        "uss_mb": round(memory.uss / 2**20, 1),
        "threads": process.num_threads(),
        "children": len(process.children()),
        "event_loop": loop.group(1) if loop else "unknown",
    }


async def run(args: argparse.Namespace, log: TextIO) -> dict[str, Any]:
    if args.mediamtx and shutil.which("mediamtx") is None:
        raise BenchError("--mediamtx needs a mediamtx binary on PATH")
    idle = await idle_figures(args.window, args.mediamtx)
    imports = await asyncio.to_thread(import_profile)
    return {
        "idle": idle,
        "imports": imports,
        "target_cpu_percent": TARGET_CPU_PERCENT,
        "cpu_target_met": idle["cpu_percent"] < TARGET_CPU_PERCENT,
        "target_rss_mb": TARGET_RSS_MB,
        "rss_target_met": idle["rss_mb"] < TARGET_RSS_MB,
    }


def table(report: dict[str, Any]) -> str:
    idle, imports = report["idle"], report["imports"]
    head = (
        f"idle over {idle['window_s']:g} s on {idle['event_loop']}"
        f"{' with MediaMTX and stream auth' if idle['mediamtx'] else ''}: "
        f"CPU {idle['cpu_percent']}% "
        f"of a core ({idle['cpu_seconds']} s), RSS {idle['rss_mb']} MB, USS {idle['uss_mb']} MB, "
        f"{idle['threads']} threads, {idle['children']} children; "
        f"import camera_service.app alone: {imports['import_rss_mb']} MB RSS; "
        f"targets CPU < {report['target_cpu_percent']}% "
        f"({'met' if report['cpu_target_met'] else 'missed'}), "
        f"RSS < {report['target_rss_mb']:g} MB ({'met' if report['rss_target_met'] else 'missed'})"
    )
    rows = [[r["module"], f"{r['ms']:.1f}"] for r in imports["top_cumulative_ms"]]
    return head + "\n" + format_table(["module (import, cumulative)", "ms"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--window", type=positive_int, default=60, help="seconds of idle CPU")
    parser.add_argument(
        "--mediamtx",
        action="store_true",
        help="run beside a real MediaMTX (on PATH) with stream access control",
    )
    return run_bench(parser, argv, run, table)


if __name__ == "__main__":
    raise SystemExit(main())
