"""Continuous recording, motion analysis and clips, against bare FFmpeg in the same run.

1. Motion analysis CPU per 640x480@15 camera: the FFmpeg branch (fps → scale → grey →
   tblend → UDP) measured as the CPU difference between a source-only FFmpeg and the same
   process with the motion output, plus the daemon-side scoring (timed per frame); and, for
   the whole recorder, its argv with and without the motion output.
2. Continuous recording vs a bare FFmpeg segmenter on the same source: CPU of the daemon
   (``python -m camera_service run``, the mode stored before it starts) plus its FFmpeg child,
   against ``ffmpeg -f segment`` alone, rounds interleaved. Target ratio <= 1.1.
3. Time to export a clip of ``--export-minutes`` (10) from ``--segment-seconds`` (60) segments
   written by the recorder's own segment muxer options.
4. Storage overhead of segmenting: the segments' bytes against the same packets in one MP4.

    python -m bench.nvr                      # ~3 min on a 2-core box
    python -m bench.nvr --json out.json
    python -m bench.nvr --seconds 3 --rounds 1 --export-minutes 1 --segment-seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import yaml

from bench.common import (
    add_json_option,
    format_table,
    median,
    positive_int,
    publish,
    subprocess_env,
)
from camera_service.config import ContinuousConfig, MotionConfig
from camera_service.media import clips
from camera_service.media.continuous import build_continuous_args
from camera_service.media.ffmpeg import ProcessSupervisor
from camera_service.media.motion import MotionScorer, ffmpeg_motion_filter
from camera_service.media.recordings import EncoderSettings
from camera_service.media.source import CaptureSource
from camera_service.storage import segments as seg

WIDTH, HEIGHT, FPS = 640, 480, 15
LAVFI = f"testsrc2=size={WIDTH}x{HEIGHT}:rate={FPS}"
ENCODER = EncoderSettings(preset="veryfast", bitrate="2M", profile="main")
WARMUP_S = 2.0
MOTION_TARGET_PERCENT = 5.0
RATIO_TARGET = 1.1
FRAME_RATE = ContinuousConfig().frame_rate  # the latest-frame JPEG output, as configured


# --------------------------------------------------------------------------- CPU sampling


def tree_cpu(pid: int) -> float:
    """User + system CPU seconds of a process and its live children."""
    total = 0.0
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    for item in procs:
        try:
            times = item.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def timed_cpu(argv: list[str], seconds: float, env: dict[str, str] | None = None) -> float:
    """CPU percent of one core used by ``argv`` (and its children) over ``seconds``."""
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    try:
        time.sleep(WARMUP_S)
        before, t0 = tree_cpu(proc.pid), time.monotonic()
        time.sleep(seconds)
        after, t1 = tree_cpu(proc.pid), time.monotonic()
    finally:
        stop(proc)
    return (after - before) / (t1 - t0) * 100


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------- 1. motion


class ScoringSink:
    """Receives motion datagrams in a thread and times the daemon's scoring of each."""

    def __init__(self, cfg: MotionConfig) -> None:
        import socket
        import threading

        self.scorer = MotionScorer(cfg)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.frames = 0
        self.busy_s = 0.0
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(70000)
            except TimeoutError:
                continue
            start = time.perf_counter()
            self.scorer.score(data)
            self.busy_s += time.perf_counter() - start
            self.frames += 1

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        self.sock.close()


def motion_output(cfg: MotionConfig, port: int) -> list[str]:
    size = cfg.width * cfg.height
    return [
        *("-map", "0:v:0", "-an", "-vf", ffmpeg_motion_filter(cfg)),
        *("-f", "rawvideo", f"udp://127.0.0.1:{port}?pkt_size={size}"),
    ]


def bench_motion(seconds: float, rounds: int, work: Path) -> dict[str, Any]:
    cfg = MotionConfig()
    source = CaptureSource("bench", LAVFI, "lavfi", fps=FPS)
    base = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostats", *source.input_args()]
    bare = [*base, "-map", "0:v:0", "-f", "null", "-"]
    branch_deltas, recorder_deltas, scoring = [], [], []
    frame_path = work / "frame.jpg"
    for index in range(rounds):
        sink = ScoringSink(cfg)
        try:
            with_branch = [
                *base,
                "-map",
                "0:v:0",
                "-f",
                "null",
                "-",
                *motion_output(cfg, sink.port),
            ]
            a = timed_cpu(bare, seconds)
            b = timed_cpu(with_branch, seconds)
            directory = work / f"m{index}"
            directory.mkdir(parents=True)
            rec = build_continuous_args(
                "ffmpeg",
                source,
                seg.segment_pattern(directory, "bench", "c000000"),
                directory / "list.csv",
                60,
                ENCODER,
                frame_path,
                2.0,
                None,
                None,
            )
            rec_motion = build_continuous_args(
                "ffmpeg",
                source,
                seg.segment_pattern(directory, "bench", "c000001"),
                directory / "list2.csv",
                60,
                ENCODER,
                frame_path,
                2.0,
                cfg,
                sink.port,
            )
            env = {**os.environ, "TZ": "UTC"}
            c = timed_cpu(rec, seconds, env)
            frames_before, busy_before = sink.frames, sink.busy_s
            t0 = time.monotonic()
            d = timed_cpu(rec_motion, seconds, env)
            elapsed = time.monotonic() - t0
            frames = sink.frames - frames_before
            busy = sink.busy_s - busy_before
        finally:
            sink.close()
        branch_deltas.append(b - a)
        recorder_deltas.append(d - c)
        scoring.append(
            {
                "frames": frames,
                "percent": busy / elapsed * 100,
                "us_per_frame": busy / frames * 1e6 if frames else 0.0,
            }
        )
    daemon_percent = median([s["percent"] for s in scoring])
    ffmpeg_branch = median(branch_deltas)
    total = max(ffmpeg_branch, 0.0) + daemon_percent
    return {
        "ffmpeg_branch_percent": round(ffmpeg_branch, 2),
        "recorder_delta_percent": round(median(recorder_deltas), 2),
        "daemon_scoring_percent": round(daemon_percent, 3),
        "scoring_us_per_frame": round(median([s["us_per_frame"] for s in scoring]), 1),
        "analysed_fps": cfg.fps,
        "analysis_size": f"{cfg.width}x{cfg.height}",
        "total_percent": round(total, 2),
        "target_percent": MOTION_TARGET_PERCENT,
        "met": total <= MOTION_TARGET_PERCENT,
        "rounds": {"branch": branch_deltas, "recorder": recorder_deltas, "scoring": scoring},
    }


# --------------------------------------------------------------------------- 2. recording


def daemon_config(work: Path) -> Path:
    state = work / "state"
    state.mkdir(parents=True, exist_ok=True)
    (state / "recording_modes.json").write_text(
        json.dumps(
            {"cam": {"mode": "continuous", "segment_seconds": 60, "pre_roll": 5, "post_roll": 5}}
        )
    )
    config = {
        "server": {"host": "127.0.0.1", "port": 0},
        "http": {"host": "127.0.0.1", "port": 0},
        "storage": {
            "recordings_dir": str(work / "recordings"),
            "snapshots_dir": str(work / "snapshots"),
            "state_dir": str(state),
        },
        "cameras": {
            "discovery": "off",
            "sources": [{"id": "cam", "input_format": "lavfi", "input": LAVFI}],
        },
        "mediamtx": {"enabled": False},
        "ffmpeg": {
            "preset": ENCODER.preset,
            "bitrate": ENCODER.bitrate,
            "profile": ENCODER.profile,
        },
        "logging": {"level": "WARNING"},
    }
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def bench_recording(seconds: float, rounds: int, work: Path) -> dict[str, Any]:
    source = CaptureSource("cam", LAVFI, "lavfi", fps=FPS)
    ours: list[float] = []
    bare: list[float] = []
    ffmpeg_only: list[float] = []
    for index in range(rounds):
        out = work / f"bare{index}"
        out.mkdir(parents=True)
        bare_argv = [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostats",
            *source.input_args(),
            *("-map", "0:v:0", "-c:v", "libx264", "-preset", ENCODER.preset),
            *("-b:v", ENCODER.bitrate, "-profile:v", ENCODER.profile, "-g", str(FPS)),
            *("-pix_fmt", "yuv420p", "-f", "segment", "-segment_time", "60"),
            *("-reset_timestamps", "1", str(out / "%05d.mp4")),
        ]
        bare.append(timed_cpu(bare_argv, seconds))
        run_dir = work / f"ours{index}"
        config = daemon_config(run_dir)
        argv = [sys.executable, "-m", "camera_service", "--config", str(config), "run"]
        ours.append(timed_cpu(argv, seconds, subprocess_env()))
        directory = work / f"argv{index}"
        directory.mkdir(parents=True)
        recorder = build_continuous_args(
            "ffmpeg", source, seg.segment_pattern(directory, "cam", "c000000"),
            directory / "list.csv", 60, ENCODER, directory / "f.jpg", FRAME_RATE, None, None,
        )  # fmt: skip
        ffmpeg_only.append(timed_cpu(recorder, seconds, {**os.environ, "TZ": "UTC"}))
    ratio = median(ours) / median(bare) if median(bare) else 0.0
    ffmpeg_ratio = median(ffmpeg_only) / median(bare) if median(bare) else 0.0
    return {
        "ours_percent": round(median(ours), 2),
        "bare_percent": round(median(bare), 2),
        "ours_ffmpeg_only_percent": round(median(ffmpeg_only), 2),
        "ffmpeg_only_ratio": round(ffmpeg_ratio, 3),
        "frame_rate": FRAME_RATE,
        "ratio": round(ratio, 3),
        "target_ratio": RATIO_TARGET,
        "met": ratio <= RATIO_TARGET,
        "rounds": {"ours": ours, "bare": bare, "ffmpeg_only": ffmpeg_only},
    }


# --------------------------------------------------------------------------- 3 + 4. clips


def write_segments(directory: Path, minutes: float, segment_seconds: int) -> tuple[float, float]:
    """Footage of ``minutes`` (plus one segment) as the recorder writes it, encoded as fast
    as possible; returns (t0, encode seconds)."""
    total = minutes * 60 + segment_seconds
    run = "c0be0c1"
    t0 = time.time() - total
    seg.write_run(directory, seg.RunRecord(run, "bench", t0, segment_seconds))
    fragments = (
        "movflags=+frag_keyframe+empty_moov+default_base_moof:frag_duration=1000000:flush_packets=1"
    )
    argv = [
        "ffmpeg",
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostats",
        *("-f", "lavfi", "-i", f"{LAVFI}:duration={total:g}"),
        *("-map", "0:v:0", "-c:v", "libx264", "-preset", "ultrafast", "-b:v", ENCODER.bitrate),
        *("-pix_fmt", "yuv420p", "-g", str(FPS)),
        *("-force_key_frames", f"expr:gte(t,n_forced*{segment_seconds})"),
        *("-f", "segment", "-segment_time", str(segment_seconds), "-reset_timestamps", "1"),
        *("-segment_format", "mp4", "-segment_format_options", fragments),
        *("-segment_list", str(directory / "encoded.csv"), "-segment_list_type", "csv"),
        str(directory / "encoded_%05d.mp4"),
    ]
    start = time.monotonic()
    subprocess.run(argv, check=True, timeout=3600)
    elapsed = time.monotonic() - start
    # Faster than real time, so name the files as the live recorder would have (its names
    # carry the wall-clock second each segment started).
    listed = seg.parse_segment_list((directory / "encoded.csv").read_text())
    lines = []
    for name, (begin, finish) in sorted(listed.items(), key=lambda item: item[1]):
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(t0 + begin))
        final = f"bench_{stamp}_{run}.mp4"
        (directory / name).rename(directory / final)
        lines.append(f"{final},{begin:.6f},{finish:.6f}\n")
    (directory / f"{run}.csv").write_text("".join(lines))
    (directory / "encoded.csv").unlink()
    return t0, elapsed


async def export_once(segments: list[seg.Segment], start: float, end: float, out: Path) -> float:
    supervisor = ProcessSupervisor()
    try:
        plan = clips.plan_clip(segments, start, end)
        t = time.monotonic()
        await clips.export(supervisor, "ffmpeg", "ffprobe", plan, out, "mp4", 600)
        return time.monotonic() - t
    finally:
        await supervisor.shutdown()


def bench_export(minutes: float, segment_seconds: int, rounds: int, work: Path) -> dict[str, Any]:
    root = work / "segments"
    directory = root / "bench"
    directory.mkdir(parents=True)
    t0, encode_s = write_segments(directory, minutes, segment_seconds)
    segments = [s for s in seg.scan_camera(root, "bench") if s.complete]
    # A range that starts mid-segment (a keyframe is looked up) and spans `minutes`.
    start = segments[0].start + segment_seconds / 2
    end = start + minutes * 60
    times = []
    for index in range(rounds):
        out = work / f"clip{index}.mp4"
        times.append(asyncio.run(export_once(segments, start, end, out)))
        if index < rounds - 1:
            out.unlink()
    clip = work / f"clip{rounds - 1}.mp4"
    used = clips.plan_clip(segments, start, end).segments
    # 4. the same packets: every segment of the span vs those packets in one file
    whole = work / "whole.mp4"
    listing = work / "all.ffconcat"
    listing.write_text("ffconcat version 1.0\n" + "".join(f"file '{s.path}'\n" for s in segments))
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-f",
            "concat",
            "-safe",
            "0",
            "-i",
            str(listing),
            "-c",
            "copy",
            "-movflags",
            "+faststart",
            str(whole),
        ],
        check=True,
        timeout=600,
    )
    fragmented = work / "whole_fmp4.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-f",
            "concat",
            "-safe",
            "0",
            "-i",
            str(listing),
            "-c",
            "copy",
            "-movflags",
            "+frag_keyframe+empty_moov+default_base_moof",
            "-frag_duration",
            "1000000",
            str(fragmented),
        ],
        check=True,
        timeout=600,
    )
    seg_bytes = sum(s.size for s in segments)
    return {
        "clip_minutes": minutes,
        "segment_seconds": segment_seconds,
        "segments_used": len(used),
        "export_s_median": round(median(times), 3),
        "export_s_max": round(max(times), 3),
        "clip_bytes": clip.stat().st_size,
        "footage_encode_s": round(encode_s, 1),
        "overhead_vs_one_mp4_percent": round((seg_bytes / whole.stat().st_size - 1) * 100, 3),
        "overhead_vs_one_fmp4_percent": round((seg_bytes / fragmented.stat().st_size - 1) * 100, 3),
        "segments_bytes": seg_bytes,
        "one_mp4_bytes": whole.stat().st_size,
        "t0": t0,
    }


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    global WARMUP_S  # read by every timed_cpu() of this run
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="CPU window per run")
    parser.add_argument("--rounds", type=positive_int, default=3, help="interleaved rounds")
    parser.add_argument("--export-minutes", type=float, default=10.0)
    parser.add_argument("--segment-seconds", type=positive_int, default=60)
    parser.add_argument("--export-rounds", type=positive_int, default=3)
    parser.add_argument(
        "--warmup", type=float, default=WARMUP_S, help="seconds before each CPU window"
    )
    add_json_option(parser)
    args = parser.parse_args(argv)
    WARMUP_S = args.warmup
    if shutil.which("ffmpeg") is None:
        print("ffmpeg is not on PATH", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-nvr-") as tmp:
        work = Path(tmp)
        motion = bench_motion(args.seconds, args.rounds, work / "motion")
        recording = bench_recording(args.seconds, args.rounds, work / "recording")
        export = bench_export(
            args.export_minutes, args.segment_seconds, args.export_rounds, work / "export"
        )
    report = {
        "motion": motion,
        "recording": recording,
        "export": export,
        "config": {
            "source": LAVFI,
            "encoder": {"preset": ENCODER.preset, "bitrate": ENCODER.bitrate},
            "seconds": args.seconds,
            "rounds": args.rounds,
            "cpus": os.cpu_count(),
        },
    }
    rows = [
        ["motion: FFmpeg branch (% core)", f"{motion['ffmpeg_branch_percent']:.2f}"],
        ["motion: recorder with/without (% core)", f"{motion['recorder_delta_percent']:.2f}"],
        ["motion: daemon scoring (% core)", f"{motion['daemon_scoring_percent']:.3f}"],
        ["motion: total (target <= 5)", f"{motion['total_percent']:.2f}"],
        ["continuous: ours (% core)", f"{recording['ours_percent']:.1f}"],
        ["continuous: bare segmenter (% core)", f"{recording['bare_percent']:.1f}"],
        ["continuous: ours/bare (target <= 1.1)", f"{recording['ratio']:.3f}"],
        ["continuous: our FFmpeg only/bare", f"{recording['ffmpeg_only_ratio']:.3f}"],
        [
            f"export {export['clip_minutes']:g} min clip (s, median)",
            f"{export['export_s_median']:.3f}",
        ],
        ["segments vs one mp4 (% bytes)", f"{export['overhead_vs_one_mp4_percent']:+.3f}"],
        ["segments vs one fmp4 (% bytes)", f"{export['overhead_vs_one_fmp4_percent']:+.3f}"],
    ]
    publish(report, format_table(["figure", "value"], rows), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
