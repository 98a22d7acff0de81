"""CPU per recorded camera: an H.264 camera copied (``-c:v copy``) against today's re-encode.

One run makes a 1920x1080@30 H.264 file with FFmpeg (the stand-in for an H.264 USB camera),
then starts the daemon twice as a subprocess (``python -m camera_service run``, 127.0.0.1,
ephemeral ports), each time with one configured camera reading that file in real time:

- ``copy``: the source is declared H.264 (``pixel_format: H264``), so the daemon records it
  with ``-c:v copy`` (what it does for an H.264 V4L2 camera);
- ``encode``: the same source without the declaration, re-encoded with libx264 as every
  camera was before.

For each, ``--seconds`` of recording (``start_recording`` … ``stop_recording`` over a real
WebSocket) are measured with psutil: CPU seconds of the daemon and of its FFmpeg children
over the window, as a percentage of one core, after an idle window of the same length (the
daemon's own idle CPU). Targets: copy ≤ 5 % of one core and ≤ 0.1x the re-encode.

    python -m bench.capture_cpu                    # 10 s per mode, ~1 minute
    python -m bench.capture_cpu --seconds 20 --json results.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

import psutil
import yaml

from bench.common import add_json_option, format_table, run_ffmpeg_benchmark
from bench.snapshot_latency import Daemon, ffmpeg_version
from camera_service.auth.api_keys import ApiKeyStore
from camera_service.auth.roles import Role
from camera_service.cameras.model import parse_resolution
from camera_service.client import CameraClient
from camera_service.config import build_config

HOST = "127.0.0.1"
CAMERA = "h264cam"
SIZE, RATE = "1920x1080", 30
TARGET_COPY_PERCENT = 5.0
TARGET_COPY_RATIO = 0.1
CALL_TIMEOUT_S = 30.0
SNAPSHOTS = 5
MJPEG_SIZE = "640x480"  # what a USB 2 webcam sends as MJPG


def make_source(
    path: Path, size: str = SIZE, seconds: int = 10, codec: list[str] | None = None
) -> None:
    """An H.264 file (1080p30 by default) with a key frame every second, what a UVC H.264
    camera sends."""
    subprocess.run(
        [
            *("ffmpeg", "-hide_banner", "-loglevel", "error", "-y"),
            *("-f", "lavfi", "-i", f"testsrc2=size={size}:rate={RATE}"),
            *("-t", str(seconds)),
            *(codec or ["-c:v", "libx264", "-preset", "ultrafast", "-g", str(RATE), "-b:v", "4M"]),
            *("-pix_fmt", "yuvj422p" if codec else "yuv420p", str(path)),
        ],
        check=True,
        timeout=300,
    )


def daemon_config(tmp: Path, source: Path, copy: bool) -> dict[str, Any]:
    camera: dict[str, Any] = {
        "id": CAMERA,
        "name": "H.264 camera",
        "input": str(source),
        "exclusive": True,
    }
    if copy:
        camera["pixel_format"] = "H264"
    return {
        "server": {"host": HOST, "port": 0},
        "http": {"host": HOST, "port": 0},
        "storage": {
            "recordings_dir": str(tmp / "recordings"),
            "snapshots_dir": str(tmp / "snapshots"),
            "state_dir": str(tmp / "state"),
        },
        "cameras": {"discovery": "off", "sources": [camera]},
        "mediamtx": {"enabled": False},
        "ffmpeg": {"video_encoder": "libx264"},  # no probe: the windows measure recording only
        "logging": {"level": "INFO", "format": "json"},
    }


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def tree_cpu(pid: int) -> tuple[float, dict[int, tuple[float, str]]]:
    """CPU seconds of the daemon itself, and of each living descendant with its command."""
    daemon = psutil.Process(pid)
    children: dict[int, tuple[float, str]] = {}
    for child in daemon.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            children[child.pid] = (cpu_seconds(child), " ".join(child.cmdline()))
    return cpu_seconds(daemon), children


def probe_recording(path: Path) -> tuple[float, int]:
    """Seconds of media and frames in a recording (did the encoder keep up in real time?)."""
    out = subprocess.run(
        [
            *("ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets"),
            *("-show_entries", "stream=nb_read_packets:format=duration", "-of", "json"),
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    data = json.loads(out.stdout)
    frames = int(data["streams"][0]["nb_read_packets"]) if data.get("streams") else 0
    return round(float(data.get("format", {}).get("duration", 0.0)), 2), frames


async def measure_mode(
    tmp: Path,
    source: Path,
    copy: bool,
    seconds: float,
    log: TextIO,
    name: str | None = None,
    snapshots: int = SNAPSHOTS,
) -> dict[str, Any]:
    mode = name or ("copy" if copy else "encode")
    work = tmp / mode
    raw = daemon_config(work, source, copy)
    config = build_config(raw)
    config.storage.state_dir.mkdir(parents=True, mode=0o700)
    config_file = work / "config.yaml"
    config_file.write_text(yaml.safe_dump(raw))
    key, _ = ApiKeyStore(config.api_keys_file).create("bench", Role.OPERATOR)
    print(f"{mode}: starting the daemon", file=log)
    daemon = await Daemon.start(config_file, work / "daemon.log")
    try:
        async with CameraClient(daemon.ws_url) as client:
            await client.authenticate(key)
            idle_before, _ = tree_cpu(daemon.pid)
            idle_began = time.perf_counter()
            await asyncio.sleep(seconds)
            idle_cpu = tree_cpu(daemon.pid)[0] - idle_before
            idle_wall = time.perf_counter() - idle_began

            shots_ms = []
            for index in range(snapshots):
                shot_began = time.perf_counter()
                await asyncio.wait_for(
                    client.call("take_snapshot", {"device": CAMERA, "filename": f"s{index}"}),
                    CALL_TIMEOUT_S,
                )
                shots_ms.append((time.perf_counter() - shot_began) * 1000)

            print(f"{mode}: recording {seconds:g} s", file=log)
            daemon_before, _ = tree_cpu(daemon.pid)
            began = time.perf_counter()
            started = await asyncio.wait_for(
                client.call("start_recording", {"device": CAMERA, "format": "fmp4"}),
                CALL_TIMEOUT_S,
            )
            await asyncio.sleep(seconds)
            daemon_after, children = tree_cpu(daemon.pid)
            wall = time.perf_counter() - began
            stopped = await asyncio.wait_for(
                client.call("stop_recording", {"device": CAMERA}), CALL_TIMEOUT_S
            )
    finally:
        await daemon.stop()
    media_s, frames = probe_recording(config.storage.recordings_dir / started["filename"])
    daemon_cpu = daemon_after - daemon_before
    # the recording FFmpeg started inside the window: all its CPU time is in it
    ffmpeg_cpu = sum(cpu for cpu, _cmd in children.values())
    argv = " ".join(cmd for _cpu, cmd in children.values())
    total = daemon_cpu + ffmpeg_cpu
    return {
        "mode": mode,
        "wall_s": round(wall, 2),
        "daemon_percent": round(100 * daemon_cpu / wall, 2),
        "ffmpeg_percent": round(100 * ffmpeg_cpu / wall, 2),
        "total_percent": round(100 * total / wall, 2),
        "idle_daemon_percent": round(100 * idle_cpu / idle_wall, 2),
        "file": started["filename"],
        "file_size": stopped["file_size"],
        "ffmpeg_children": len(children),
        "media_seconds": media_s,
        "frames": frames,
        "copy_in_argv": "-c:v copy" in argv,
        "snapshot_p50_ms": round(statistics.median(shots_ms), 1) if shots_ms else None,
    }


async def run_benchmark(args: argparse.Namespace, log: TextIO) -> dict[str, Any]:
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-capture-") as name:
        tmp = Path(name)
        source = tmp / "camera.mp4"
        print(f"making a {args.size}@{RATE} H.264 source", file=log)
        make_source(source, args.size)
        copy = await measure_mode(tmp, source, True, args.seconds, log)
        encode = await measure_mode(tmp, source, False, args.seconds, log)
        mjpeg = None
        if args.mjpeg:
            small = tmp / "mjpeg.mkv"
            print(f"making a {MJPEG_SIZE}@{RATE} MJPEG source", file=log)
            make_source(small, MJPEG_SIZE, codec=["-c:v", "mjpeg", "-q:v", "5"])
            mjpeg = await measure_mode(tmp, small, False, args.seconds, log, f"mjpeg-{MJPEG_SIZE}")
    ratio = copy["total_percent"] / encode["total_percent"] if encode["total_percent"] else 0.0
    return {
        "benchmark": "capture_cpu",
        "source": f"H.264 {args.size}@{RATE}, file read in real time",
        "seconds": args.seconds,
        "copy": copy,
        "encode": encode,
        "ratio_copy_encode": round(ratio, 4),
        "mjpeg": mjpeg,
        "targets": {
            "copy_percent_max": TARGET_COPY_PERCENT,
            "copy_ratio_max": TARGET_COPY_RATIO,
            "copy_percent_ok": copy["total_percent"] <= TARGET_COPY_PERCENT,
            "copy_ratio_ok": ratio <= TARGET_COPY_RATIO,
        },
        "environment": {
            "python": platform.python_version(),
            "ffmpeg": ffmpeg_version("ffmpeg"),
            "cpus": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
        },
        "duration_s": round(time.perf_counter() - began, 1),
    }


def render(report: dict[str, Any]) -> str:
    rows = []
    for key in ("copy", "encode", "mjpeg"):
        r = report.get(key)
        if not r:
            continue
        rows.append(
            [
                r["mode"],
                f"{r['daemon_percent']:.2f}",
                f"{r['ffmpeg_percent']:.2f}",
                f"{r['total_percent']:.2f}",
                f"{r['idle_daemon_percent']:.2f}",
                f"{r['file_size'] / 1e6:.1f}",
                f"{r['media_seconds']:.1f}",
                str(r["frames"]),
                f"{r['snapshot_p50_ms']}",
            ]
        )
    table = format_table(
        [
            "mode",
            "daemon %",
            "ffmpeg %",
            "total % of a core",
            "idle daemon %",
            "file MB",
            "media s",
            "frames",
            "snapshot p50 ms",
        ],
        rows,
    )
    t = report["targets"]
    verdict = (
        f"copy {report['copy']['total_percent']:.2f} % of a core (target ≤ "
        f"{t['copy_percent_max']:g} %: {'PASS' if t['copy_percent_ok'] else 'FAIL'}); "
        f"copy/encode {report['ratio_copy_encode']:.3f} (target ≤ {t['copy_ratio_max']:g}: "
        f"{'PASS' if t['copy_ratio_ok'] else 'FAIL'})"
    )
    env = report["environment"]
    return (
        f"{table}\n{verdict}\n{report['source']}, {report['seconds']:g} s per mode; "
        f"load average {env['load_average']}, {env['cpus']} CPUs, {env['ffmpeg']}"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.capture_cpu",
        description=__doc__.splitlines()[0] if __doc__ else "",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="window per mode (s)")
    parser.add_argument("--size", default=SIZE, help="source frame size WxH (default 1920x1080)")
    parser.add_argument(
        "--no-mjpeg",
        dest="mjpeg",
        action="store_false",
        help=f"skip the {MJPEG_SIZE} MJPEG camera (decoded and encoded)",
    )
    add_json_option(parser)
    args = parser.parse_args(argv)
    if not 1 <= args.seconds <= 120:
        parser.error("--seconds must be in [1, 120]")
    if parse_resolution(args.size) is None:
        parser.error("--size must be WxH, e.g. 1920x1080")
    return args


def main(argv: list[str] | None = None) -> int:
    return run_ffmpeg_benchmark(parse_args(argv), run_benchmark, render)


if __name__ == "__main__":
    sys.exit(main())
