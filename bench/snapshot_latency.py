"""Snapshot and recording latency: the daemon's media API against bare FFmpeg.

One run starts the daemon as a subprocess (`python -m camera_service run`, 127.0.0.1,
ephemeral ports) with one configured lavfi camera (`testsrc2=size=640x480:rate=15`) and
drives it through a real WebSocket connection with `camera_service.client.CameraClient`.
The daemon runs in its own interpreter so that its event loop, GIL and RSS are its own: the
benchmark's client, timers and reference FFmpeg runs are not charged to it (in-process,
the client's frame handling would share the daemon's loop, and psutil could not tell the
daemon's memory from the benchmark's).

Measured, interleaved because the 2-core box is noisy:

- snapshots: `--snapshots` pairs of (bare, api): a bare `ffmpeg -frames:v 1` capture of the
  same source with exactly the daemon's argv (`media.snapshots.build_capture_args`), then a
  `take_snapshot` call; report p50/p95 of both and the ratio api/bare (target p50 ≤ 1.2).
  The calls name their files (`filename`), because generated names have a 1 s resolution and
  collide at this pace; `--unnamed` uses generated names, spacing the calls > 1 s apart;
- recordings: `--cycles` pairs of (bare, api): the daemon's recording argv
  (`media.recordings.build_recording_args`) run bare, timed from spawn to FFmpeg's first
  `-progress` block (what `start_recording` waits for) and from `q` to exit; then
  `start_recording`, `--record-seconds` of recording, `stop_recording`. Targets: start p95
  < 100 ms, stop p95 < 1 s;
- memory: the daemon's RSS (psutil) idle and with the camera recording, plus its FFmpeg child;
- floor: `ffmpeg -version` wall time, the cost of starting any FFmpeg on this machine.

`--what-if` also times FFmpeg's first progress block for variants of the recording argv
(latest-frame output with the fps filter's default rounding, no latest-frame output), to size
the options for a faster `start_recording`.

    python -m bench.snapshot_latency                      # 30 pairs + 10 cycles, ~1 minute
    python -m bench.snapshot_latency --what-if            # plus the argv variants
    python -m bench.snapshot_latency --unnamed            # generated names, ~1.5 minutes
    python -m bench.snapshot_latency --json results.json  # also write the figures as JSON
    python -m bench.snapshot_latency --json               # JSON on stdout, table on stderr
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import psutil
import yaml

from bench.common import (
    REPO_ROOT,
    add_json_option,
    format_table,
    latency_summary_ms,
    non_negative_int,
    positive_int,
    run_ffmpeg_benchmark,
)
from camera_service.auth.api_keys import ApiKeyStore
from camera_service.auth.roles import Role
from camera_service.client import CameraClient
from camera_service.config import Config, build_config
from camera_service.media.recordings import EncoderSettings, build_recording_args
from camera_service.media.snapshots import build_capture_args
from camera_service.media.source import CaptureSource

HOST = "127.0.0.1"
CAMERA = "bench0"
LAVFI_INPUT = "testsrc2=size=640x480:rate=15"
SNAPSHOT_FORMAT = "jpg"
RECORDING_FORMAT = "fmp4"
FRAME_RATE = 2.0  # RecordingManager's default latest-frame rate
TARGET_SNAPSHOT_RATIO = 1.2
TARGET_START_P95_MS = 100.0
TARGET_STOP_P95_MS = 1000.0
DAEMON_START_TIMEOUT_S = 30.0
CALL_TIMEOUT_S = 30.0
FLOOR_RUNS = 5
MIB = 1 << 20
UNNAMED_SPACING_S = 1.05


class BenchError(RuntimeError):
    """The benchmark could not measure (the daemon or FFmpeg misbehaved)."""


def now_ns() -> int:
    return time.perf_counter_ns()


# --- the daemon under test ----------------------------------------------------------------------


def daemon_config(tmp: Path) -> dict[str, Any]:
    return {
        "server": {"host": HOST, "port": 0},
        "http": {"host": HOST, "port": 0},
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
                    "name": "Benchmark test pattern",
                    "input_format": "lavfi",
                    "input": LAVFI_INPUT,
                    "exclusive": True,
                }
            ],
        },
        "mediamtx": {"enabled": False},
        "logging": {"level": "INFO", "format": "json"},
    }


@dataclass
class Daemon:
    """`python -m camera_service run` in a child process; its log goes to a file."""

    proc: asyncio.subprocess.Process
    log_path: Path
    ws_url: str

    @classmethod
    async def start(cls, config_file: Path, log_path: Path, root: Path = REPO_ROOT) -> Daemon:
        """`root`: the checkout whose `camera_service` runs (another commit's, for A/B runs)."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            part for part in (str(root), env.get("PYTHONPATH")) if part
        )
        env["PYTHONUNBUFFERED"] = "1"
        with log_path.open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "camera_service",
                "--config",
                str(config_file),
                "run",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=root,
                env=env,
            )
        try:
            port = await asyncio.wait_for(_started_port(proc, log_path), DAEMON_START_TIMEOUT_S)
        except BaseException:
            await _terminate(proc)
            raise
        return cls(proc, log_path, f"ws://{HOST}:{port}/ws")

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def stop(self) -> int:
        return await _terminate(self.proc)


async def _started_port(proc: asyncio.subprocess.Process, log_path: Path) -> int:
    while True:
        text = await asyncio.to_thread(log_path.read_text, "utf-8", "replace")
        for line in text.splitlines():
            if "camera-service started" in line:
                match = re.search(r'"ws_port": (\d+)', line)
                if match is None:
                    raise BenchError(f"no ws_port in the start line: {line}")
                return int(match.group(1))
        if proc.returncode is not None:
            raise BenchError(f"the daemon exited during start:\n{text[-2000:]}")
        await asyncio.sleep(0.05)


async def _terminate(proc: asyncio.subprocess.Process, timeout: float = 15.0) -> int:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
    return await proc.wait()


# --- bare FFmpeg references ---------------------------------------------------------------------


async def bare_capture(argv: list[str]) -> int:
    """Wall time (ns) of one FFmpeg run to completion; raises if it fails."""
    started = now_ns()
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), CALL_TIMEOUT_S)
    elapsed = now_ns() - started
    if proc.returncode != 0:
        raise BenchError(f"{argv[0]} failed ({proc.returncode}): {stderr.decode()[-500:]}")
    return elapsed


async def bare_recording(argv: list[str], seconds: float) -> tuple[int, int]:
    """(spawn → first ``-progress`` block, ``q`` → exit) in ns of one recording argv."""
    started = now_ns()
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    stderr = asyncio.create_task(proc.stderr.read())
    stdout: asyncio.Task[bytes] | None = None
    try:
        while True:
            line = await asyncio.wait_for(proc.stdout.readline(), CALL_TIMEOUT_S)
            if line.startswith(b"progress="):
                break
            if not line:
                await proc.wait()
                detail = (await stderr).decode()[-500:]
                raise BenchError(f"ffmpeg exited before its first progress block: {detail}")
        ready = now_ns() - started
        stdout = asyncio.create_task(proc.stdout.read())  # keep the pipe drained
        await asyncio.sleep(seconds)
        stopping = now_ns()
        proc.stdin.write(b"q")
        await proc.stdin.drain()
        proc.stdin.close()
        await asyncio.wait_for(proc.wait(), CALL_TIMEOUT_S)
        stopped = now_ns() - stopping
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        for task in (stdout, stderr):
            if task is not None:
                with contextlib.suppress(Exception):
                    await task
    return ready, stopped


def recording_variants(argv: list[str]) -> dict[str, list[str]]:
    """The daemon's recording argv and what-if variants of its latest-frame output."""
    default_rounding = list(argv)
    vf = default_rounding.index("-vf") + 1
    default_rounding[vf] = default_rounding[vf].replace(":round=up", "", 1)
    first_map = argv.index("-map")
    second_map = argv.index("-map", first_map + 1)
    return {
        "current": list(argv),
        "fps_default_rounding": default_rounding,
        "no_frame_output": argv[:second_map],
    }


# --- measurements -------------------------------------------------------------------------------


@dataclass
class Setup:
    config: Config
    tmp: Path
    source: CaptureSource
    encoder: EncoderSettings
    log: TextIO

    @property
    def ffmpeg(self) -> str:
        return self.config.ffmpeg.binary

    def capture_argv(self, index: int) -> list[str]:
        output = self.tmp / "bare" / f"bare_{index:04d}.{SNAPSHOT_FORMAT}"
        return build_capture_args(self.ffmpeg, self.source, output, SNAPSHOT_FORMAT)

    def recording_argv(self, index: int) -> list[str]:
        output = self.tmp / "bare" / f"bare_{index:04d}.mp4"
        frame = self.tmp / "bare" / "latest.jpg"
        return build_recording_args(
            self.ffmpeg,
            self.source,
            output,
            RECORDING_FORMAT,
            None,
            self.encoder,
            frame,
            FRAME_RATE,
        )


async def timed(call: Awaitable[Any]) -> tuple[int, Any]:
    started = now_ns()
    result = await asyncio.wait_for(call, CALL_TIMEOUT_S)
    return now_ns() - started, result


async def measure_snapshots(
    setup: Setup, client: CameraClient, pairs: int, warmup: int, *, unnamed: bool = False
) -> dict[str, list[int]]:
    """Interleaved (bare, api) pairs. Named snapshots by default: generated names have a 1 s
    resolution and two in the same second collide ("file already exists"), so ``unnamed``
    spaces the pairs more than a second apart instead (the pause comes before the bare run,
    so both members of a pair start from the same idle state)."""
    bare: list[int] = []
    api: list[int] = []
    last_api = -UNNAMED_SPACING_S
    for index in range(warmup + pairs):
        params: dict[str, Any] = {"device": CAMERA, "format": SNAPSHOT_FORMAT}
        if unnamed:
            await asyncio.sleep(max(0.0, last_api + UNNAMED_SPACING_S - time.monotonic()))
        else:
            params["filename"] = f"bench_{index:04d}"
        bare_ns = await bare_capture(setup.capture_argv(index))
        last_api = time.monotonic()
        api_ns, shot = await timed(client.call("take_snapshot", params))
        if shot.get("status") != "SUCCESS" or shot.get("file_size", 0) <= 0:
            raise BenchError(f"unexpected take_snapshot result: {shot}")
        if index >= warmup:
            bare.append(bare_ns)
            api.append(api_ns)
    return {"bare": bare, "api": api}


def rss_bytes(pid: int) -> tuple[int, int]:
    """(RSS of the process, summed RSS of its children)."""
    process = psutil.Process(pid)
    children = 0
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            children += child.memory_info().rss
    return process.memory_info().rss, children


async def measure_recordings(
    setup: Setup, client: CameraClient, daemon_pid: int, cycles: int, seconds: float
) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {
        key: [] for key in ("start", "stop", "bare_ready", "bare_stop", "rss", "rss_ffmpeg")
    }
    for index in range(cycles):
        ready, stopped = await bare_recording(setup.recording_argv(index), seconds)
        out["bare_ready"].append(ready)
        out["bare_stop"].append(stopped)
        start_ns, started = await timed(client.call("start_recording", {"device": CAMERA}))
        if started.get("status") != "RECORDING":
            raise BenchError(f"unexpected start_recording result: {started}")
        await asyncio.sleep(seconds)
        rss, ffmpeg_rss = rss_bytes(daemon_pid)
        stop_ns, result = await timed(client.call("stop_recording", {"device": CAMERA}))
        if result.get("status") != "STOPPED" or result.get("file_size", 0) <= 0:
            raise BenchError(f"unexpected stop_recording result: {result}")
        out["start"].append(start_ns)
        out["stop"].append(stop_ns)
        out["rss"].append(rss)
        out["rss_ffmpeg"].append(ffmpeg_rss)
    return out


async def measure_what_if(setup: Setup, cycles: int, seconds: float) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for index in range(cycles):
        for name, argv in recording_variants(setup.recording_argv(1000 + index)).items():
            ready, _ = await bare_recording(argv, min(seconds, 0.3))
            out.setdefault(name, []).append(ready)
    return out


async def measure_floor(ffmpeg: str, runs: int = FLOOR_RUNS) -> list[int]:
    return [await bare_capture([ffmpeg, "-hide_banner", "-version"]) for _ in range(runs)]


# --- the run ------------------------------------------------------------------------------------


def summary(values_ns: list[int]) -> dict[str, float]:
    return {"n": len(values_ns), **latency_summary_ms(values_ns)}


def ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 3) if denominator > 0 else 0.0


def mib(values: list[int]) -> dict[str, float]:
    if not values:
        return {"median_mib": 0.0, "max_mib": 0.0}
    return {
        "median_mib": round(statistics.median(values) / MIB, 1),
        "max_mib": round(max(values) / MIB, 1),
    }


def ffmpeg_version(ffmpeg: str) -> str:
    try:
        out = subprocess.run(
            [ffmpeg, "-hide_banner", "-version"], capture_output=True, text=True, timeout=10
        )
    except OSError as exc:
        raise BenchError(f"cannot run {ffmpeg}: {exc}") from exc
    return out.stdout.splitlines()[0] if out.stdout else "unknown"


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


async def run_benchmark(args: argparse.Namespace, log: TextIO) -> dict[str, Any]:
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-snapshots-") as tmp_name:
        tmp = Path(tmp_name)
        raw_config = daemon_config(tmp)
        config = build_config(raw_config)
        config_file = tmp / "config.yaml"
        config_file.write_text(yaml.safe_dump(raw_config))
        (tmp / "bare").mkdir()
        config.storage.state_dir.mkdir(parents=True, mode=0o700)
        api_key, _ = ApiKeyStore(config.api_keys_file).create("bench", Role.OPERATOR)
        setup = Setup(
            config=config,
            tmp=tmp,
            source=CaptureSource(CAMERA, LAVFI_INPUT, "lavfi", exclusive=True),
            encoder=EncoderSettings(
                preset=config.ffmpeg.preset,
                bitrate=config.ffmpeg.bitrate,
                profile=config.ffmpeg.profile,
            ),
            log=log,
        )
        version = ffmpeg_version(setup.ffmpeg)
        floor = await measure_floor(setup.ffmpeg)
        print(f"starting the daemon ({version})", file=log)
        daemon_began = now_ns()
        daemon = await Daemon.start(config_file, tmp / "daemon.log")
        daemon_start_ns = now_ns() - daemon_began
        try:
            async with CameraClient(daemon.ws_url) as client:
                await client.authenticate(api_key)
                idle_rss, _ = rss_bytes(daemon.pid)
                print(f"{args.snapshots} snapshot pairs (bare, api)", file=log)
                shots = await measure_snapshots(
                    setup, client, args.snapshots, args.warmup, unnamed=args.unnamed
                )
                after_snapshots_rss, _ = rss_bytes(daemon.pid)
                print(f"{args.cycles} recording cycles (bare, api)", file=log)
                recs = await measure_recordings(
                    setup, client, daemon.pid, args.cycles, args.record_seconds
                )
            what_if: dict[str, list[int]] = {}
            if args.what_if:
                print(f"{args.cycles} what-if cycles", file=log)
                what_if = await measure_what_if(setup, args.cycles, args.record_seconds)
        finally:
            code = await daemon.stop()
        if code != 0:
            raise BenchError(f"the daemon exited with {code}: see {daemon.log_path}")
    return build_report(
        args,
        shots=shots,
        recs=recs,
        what_if=what_if,
        floor=floor,
        idle_rss=[idle_rss, after_snapshots_rss],
        extra={
            "ffmpeg": version,
            "daemon_start_ms": round(daemon_start_ns / 1e6, 1),
            "duration_s": round(time.perf_counter() - began, 1),
        },
    )


def build_report(
    args: argparse.Namespace,
    *,
    shots: dict[str, list[int]],
    recs: dict[str, list[int]],
    what_if: dict[str, list[int]],
    floor: list[int],
    idle_rss: list[int],
    extra: dict[str, Any],
) -> dict[str, Any]:
    bare, api = summary(shots["bare"]), summary(shots["api"])
    start, stop = summary(recs["start"]), summary(recs["stop"])
    pairs = list(zip(shots["api"], shots["bare"], strict=True))
    ratios = {
        "p50": ratio(api["p50_ms"], bare["p50_ms"]),
        "p95": ratio(api["p95_ms"], bare["p95_ms"]),
        # Robust to load drifting during the run: each api call against its own bare run.
        "paired_median": round(statistics.median(a / b for a, b in pairs), 3) if pairs else 0.0,
    }
    overhead_ms = round(statistics.median(a - b for a, b in pairs) / 1e6, 1) if pairs else 0.0
    verdicts = {
        "snapshot_ratio_p50": ratios["p50"] <= TARGET_SNAPSHOT_RATIO,
        "start_recording_p95": start["p95_ms"] < TARGET_START_P95_MS,
        "stop_recording_p95": stop["p95_ms"] < TARGET_STOP_P95_MS,
    }
    return {
        "snapshots": {
            "bare": bare,
            "api": api,
            "ratio_api_bare": ratios,
            "api_minus_bare_ms_paired_median": overhead_ms,
        },
        "recordings": {
            "start_recording": start,
            "stop_recording": stop,
            "bare_first_progress": summary(recs["bare_ready"]),
            "bare_stop": summary(recs["bare_stop"]),
        },
        "ffmpeg_exec_floor": summary(floor),
        "what_if_first_progress": {name: summary(values) for name, values in what_if.items()},
        "rss": {
            "daemon_idle": mib(idle_rss),
            "daemon_recording": mib(recs["rss"]),
            "ffmpeg_recording": mib(recs["rss_ffmpeg"]),
        },
        "targets": {
            "snapshot_ratio_p50_max": TARGET_SNAPSHOT_RATIO,
            "start_recording_p95_ms_below": TARGET_START_P95_MS,
            "stop_recording_p95_ms_below": TARGET_STOP_P95_MS,
        },
        "verdicts": verdicts,
        "config": {
            "daemon": "subprocess (python -m camera_service run)",
            "source": f"lavfi {LAVFI_INPUT}",
            "snapshot_format": SNAPSHOT_FORMAT,
            "snapshot_names": "generated" if args.unnamed else "explicit",
            "recording_format": RECORDING_FORMAT,
            "snapshots": args.snapshots,
            "warmup": args.warmup,
            "cycles": args.cycles,
            "record_seconds": args.record_seconds,
            "python": platform.python_version(),
            "cpus": _cpu_count(),
            **extra,
        },
    }


def render(report: dict[str, Any]) -> str:
    def row(name: str, s: dict[str, float]) -> list[str]:
        return [
            name,
            str(int(s["n"])),
            f"{s['p50_ms']:.1f}",
            f"{s['p95_ms']:.1f}",
            f"{s['max_ms']:.1f}",
        ]

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    snaps, recs, cfg = report["snapshots"], report["recordings"], report["config"]
    rows = [
        row("bare ffmpeg -frames:v 1", snaps["bare"]),
        row("take_snapshot (API)", snaps["api"]),
        row("start_recording (API)", recs["start_recording"]),
        row("bare recording: first progress", recs["bare_first_progress"]),
        row("stop_recording (API)", recs["stop_recording"]),
        row("bare recording: q -> exit", recs["bare_stop"]),
        row("ffmpeg -version (exec floor)", report["ffmpeg_exec_floor"]),
    ]
    rows += [
        row(f"what-if first progress: {name}", s)
        for name, s in report["what_if_first_progress"].items()
    ]
    table = format_table(["measurement", "n", "p50 ms", "p95 ms", "max ms"], rows)
    ratios, verdicts, rss = snaps["ratio_api_bare"], report["verdicts"], report["rss"]
    targets = report["targets"]
    return "\n".join(
        [
            f"{cfg['source']}, {cfg['cpus']} CPUs, daemon as a subprocess, "
            f"{cfg['snapshot_names']} snapshot names, {cfg['record_seconds']:g} s recordings, "
            f"{cfg['duration_s']} s",
            table,
            f"snapshot ratio api/bare: p50 {ratios['p50']:.2f}, p95 {ratios['p95']:.2f}, "
            f"paired median {ratios['paired_median']:.2f} "
            f"(api - bare: {snaps['api_minus_bare_ms_paired_median']:+.1f} ms) "
            f"(target p50 <= {targets['snapshot_ratio_p50_max']}: "
            f"{verdict(verdicts['snapshot_ratio_p50'])})",
            f"start_recording p95 < {targets['start_recording_p95_ms_below']:g} ms: "
            f"{verdict(verdicts['start_recording_p95'])}; "
            f"stop_recording p95 < {targets['stop_recording_p95_ms_below']:g} ms: "
            f"{verdict(verdicts['stop_recording_p95'])}",
            f"RSS: daemon idle {rss['daemon_idle']['median_mib']} MiB, recording "
            f"{rss['daemon_recording']['median_mib']} MiB "
            f"(max {rss['daemon_recording']['max_mib']}), "
            f"its ffmpeg {rss['ffmpeg_recording']['median_mib']} MiB",
        ]
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.snapshot_latency",
        description=__doc__.splitlines()[0] if __doc__ else "",
    )
    parser.add_argument("--snapshots", type=positive_int, default=30, help="(bare, api) pairs")
    parser.add_argument("--cycles", type=positive_int, default=10, help="start/stop cycles")
    parser.add_argument(
        "--record-seconds", type=float, default=1.0, help="length of each recording (s)"
    )
    parser.add_argument(
        "--warmup", type=non_negative_int, default=1, help="untimed snapshot pairs first"
    )
    parser.add_argument(
        "--what-if", action="store_true", help="also time variants of the recording argv"
    )
    parser.add_argument(
        "--unnamed",
        action="store_true",
        help="take_snapshot without a filename (API calls spaced > 1 s apart)",
    )
    add_json_option(parser)
    args = parser.parse_args(argv)
    if not 0 < args.record_seconds <= 60:
        parser.error("--record-seconds must be in (0, 60]")
    return args


def main(argv: list[str] | None = None) -> int:
    return run_ffmpeg_benchmark(parse_args(argv), run_benchmark, render)


if __name__ == "__main__":
    sys.exit(main())
