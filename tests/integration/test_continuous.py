"""Continuous recording end to end with real FFmpeg: segments that meet without a lost frame and
all play (ffprobe / decode), crash restarts, resume after restart and replug, clips cut without
re-encoding, the recording-mode methods over a real WebSocket, one reader per camera."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from camera_service.client import RpcCallError
from camera_service.storage import segments as seg
from camera_service.storage.modes import ModeSettings
from camera_service.storage.names import iso_utc
from tests.support.daemon import DaemonProcess, RunningDaemon, running_daemon
from tests.support.fake_devices import FakeEventSource, FakeProber, uvc_webcam
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(90)

FPS = 15
CAM = {
    "id": "lab0",
    "input_format": "lavfi",
    "input": f"testsrc2=size=320x240:rate={FPS}",
    "exclusive": True,
}
OVERRIDES: dict[str, Any] = {
    "cameras": {"sources": [CAM]},
    "ffmpeg": {"preset": "ultrafast", "bitrate": "500k"},
    "continuous": {"restart_backoff_base": 0.2, "restart_backoff_max": 1.0},
}


def packets(path: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        [
            *("ffprobe", "-v", "error", "-select_streams", "v:0"),
            *("-show_entries", "packet=pts_time,flags", "-of", "json", str(path)),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    items: list[dict[str, Any]] = json.loads(out.stdout).get("packets", [])
    return items


def decoded_frames(path: Path) -> int:
    out = subprocess.run(
        [
            *("ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0"),
            *("-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", str(path)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return int(out.stdout.strip() or 0)


def decodes_cleanly(path: Path) -> bool:
    """The whole file decodes without a single error (it plays)."""
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.returncode == 0 and not out.stderr.strip()


async def complete_segments(daemon: RunningDaemon, camera: str, count: int) -> list[seg.Segment]:
    found: list[seg.Segment] = []

    async def enough() -> bool:
        nonlocal found
        found = [s for s in await daemon.app.nvr.segments(camera) if s.complete]
        return len(found) >= count

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30 + count * 5
    while not await enough():
        assert loop.time() < deadline, f"fewer than {count} complete segments: {found}"
        await asyncio.sleep(0.2)
    return found


async def test_segments_meet_without_lost_frames_and_all_play(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, OVERRIDES) as daemon:
        nvr = daemon.app.nvr
        await nvr.set_mode("lab0", ModeSettings("continuous", 2, 1.0, 1.0))
        segments = (await complete_segments(daemon, "lab0", 4))[:4]
        # A snapshot now comes from the recorder's own frames: still one reader.
        async with daemon.client("operator") as client:
            shot = await client.call("take_snapshot", {"device": "lab0"})
        assert shot["status"] == "SUCCESS"
        assert daemon.app.supervisor.peak_readers("lab0") == 1
        await nvr.set_mode("lab0", ModeSettings("off", 2, 1.0, 1.0))
    assert len({s.run for s in segments}) == 1
    for before, after in itertools.pairwise(segments):
        assert after.start == pytest.approx(before.end, abs=1e-6)  # no gap, no overlap
    counts = []
    for s in segments:
        items = packets(s.path)
        counts.append(len(items))
        assert "K" in items[0]["flags"]  # every segment starts with a keyframe
        assert decodes_cleanly(s.path)
    # Every frame of the span is in exactly one segment: packets == span * fps.
    span = segments[-1].end - segments[0].start
    assert sum(counts) == round(span * FPS)
    for s, n in zip(segments[1:], counts[1:], strict=True):
        assert n == round(s.duration * FPS)


async def test_a_recorder_stopped_while_its_ffmpeg_spawns_stops_at_once(tmp_path: Path) -> None:
    """Regression: stop() found no handle yet, so the recorder's FFmpeg, once spawned, ran
    on and nvr.stop() (the daemon's shutdown) waited for it forever."""
    async with running_daemon(tmp_path, OVERRIDES) as daemon:
        supervisor, spawning = daemon.app.supervisor, asyncio.Event()
        real_start = supervisor.start

        async def start(*args: Any, **kwargs: Any) -> Any:
            if kwargs.get("role") == "continuous":
                spawning.set()
            return await real_start(*args, **kwargs)

        supervisor.start = start  # type: ignore[method-assign]
        await daemon.app.nvr.set_mode("lab0", ModeSettings("continuous", 10, 1.0, 1.0))
        await asyncio.wait_for(spawning.wait(), 10)
        await asyncio.wait_for(daemon.app.nvr.stop(), 10)
        assert [h for h in supervisor.running("lab0") if h.running] == []


async def test_ffmpeg_crash_restarts_and_the_killed_segment_plays(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, OVERRIDES) as daemon:
        nvr = daemon.app.nvr
        await nvr.set_mode("lab0", ModeSettings("continuous", 2, 1.0, 1.0))
        recorder = nvr.recorder("lab0")
        assert recorder is not None
        await complete_segments(daemon, "lab0", 1)
        first_run, handle = recorder.run, recorder.handle
        assert handle is not None and handle.pid is not None
        await wait_until(lambda: recorder.t0 is not None, 5, "t0 pinned")
        await asyncio.sleep(0.5)  # let the current segment hold some fragments
        os.kill(handle.pid, signal.SIGKILL)
        await wait_until(
            lambda: recorder.run != first_run and recorder.active, 20, "restarted after a crash"
        )
        assert recorder.restarts == 1
        mode = await _call(daemon, "get_recording_mode", {"device": "lab0"})
        assert mode["active"] is True and mode["mode"] == "continuous"
        killed = [s for s in await nvr.segments("lab0") if s.run == first_run]
        await nvr.set_mode("lab0", ModeSettings("off", 2, 1.0, 1.0))
    assert killed and all(s.complete for s in killed)  # the killed one was probed and listed
    for s in killed:
        assert decodes_cleanly(s.path)
    assert killed[-1].duration > 0


async def test_clip_is_cut_on_a_keyframe_without_reencoding(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, OVERRIDES) as daemon:
        nvr = daemon.app.nvr
        await nvr.set_mode("lab0", ModeSettings("continuous", 2, 1.0, 1.0))
        segments = await complete_segments(daemon, "lab0", 3)
        start = segments[0].start + 0.5  # inside the first second (GOP)
        end = segments[2].start + 1.2
        clip = await _call(
            daemon,
            "export_clip",
            {"device": "lab0", "start": iso_utc(start), "end": iso_utc(end)},
            role="operator",
        )
        listed = await _call(daemon, "list_recordings", {})
        await nvr.set_mode("lab0", ModeSettings("off", 2, 1.0, 1.0))
        path = daemon.app.files.directory("recordings") / clip["filename"]
        assert clip["filename"] in {f["filename"] for f in listed["files"]}
    real_start = _epoch(clip["start_time"])
    assert start - 1.0 - 1e-3 <= real_start <= start + 1e-3  # the keyframe at or before start
    assert _epoch(clip["end_time"]) == pytest.approx(end, abs=0.15)
    items = packets(path)
    assert "K" in items[0]["flags"]
    assert len(items) == pytest.approx((end - real_start) * FPS, abs=2)
    assert decodes_cleanly(path)
    assert clip["file_size"] == path.stat().st_size


async def test_methods_validate_persist_and_resume_after_restart(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, OVERRIDES) as daemon:
        async with daemon.client("viewer") as viewer:
            with pytest.raises(RpcCallError) as denied:
                await viewer.call("set_recording_mode", {"device": "lab0", "mode": "continuous"})
            assert denied.value.code == -32002
        async with daemon.client("operator") as client:
            for bad in (
                {"device": "lab0", "mode": "always"},
                {"device": "lab0", "mode": "continuous", "segment_seconds": 5},
                {"device": "lab0", "mode": "continuous", "pre_roll": -1},
            ):
                with pytest.raises(RpcCallError) as invalid:
                    await client.call("set_recording_mode", bad)
                assert invalid.value.code == -32602
            with pytest.raises(RpcCallError) as missing:
                await client.call("set_recording_mode", {"device": "nope", "mode": "continuous"})
            assert missing.value.code == -32010
            assert not (daemon.app.config.storage.state_dir / "recording_modes.json").exists()
            stored = await client.call(
                "set_recording_mode", {"device": "lab0", "mode": "continuous", "pre_roll": 3}
            )
            assert stored == {
                "device": "lab0",
                "mode": "continuous",
                "segment_seconds": 60,
                "pre_roll": 3.0,
                "post_roll": 5.0,
                "active": stored["active"],
            }
            await wait_until(lambda: daemon.app.nvr.is_active("lab0"), 15, "recording")
            listing = await client.call("list_segments", {"device": "lab0"})
            assert listing["total"] == 1
            [item] = listing["segments"]
            assert set(item) >= {
                "filename",
                "device",
                "start_time",
                "end_time",
                "duration",
                "file_size",
                "download_url",
            }
            later = await client.call(
                "list_segments", {"device": "lab0", "start": "2099-01-01T00:00:00Z"}
            )
            assert later == {"segments": [], "total": 0}
            with pytest.raises(RpcCallError) as backwards:
                await client.call(
                    "export_clip",
                    {"device": "lab0", "start": item["end_time"], "end": item["start_time"]},
                )
            assert backwards.value.code == -32602
            with pytest.raises(RpcCallError) as nothing:
                await client.call(
                    "export_clip",
                    {
                        "device": "lab0",
                        "start": "2001-01-01T00:00:00Z",
                        "end": "2001-01-01T00:01:00Z",
                    },
                )
            assert nothing.value.code == -32010
            assert nothing.value.data == {"resource": "footage", "id": "lab0"}
            with pytest.raises(RpcCallError) as naive:
                await client.call("list_segments", {"device": "lab0", "start": "2026-01-01T00:00"})
            assert naive.value.code == -32602
            events = await client.call("list_events", {"device": "lab0"})
            assert events == {"events": [], "total": 0}
    # A new daemon on the same state resumes the stored mode by itself.
    async with running_daemon(tmp_path, OVERRIDES) as again:
        await wait_until(lambda: again.app.nvr.is_active("lab0"), 15, "resumed after restart")
        mode = await _call(again, "get_recording_mode", {"device": "lab0"})
        assert mode["mode"] == "continuous" and mode["pre_roll"] == 3.0 and mode["active"]
        segments = await again.app.nvr.segments("lab0")
        assert len({s.run for s in segments}) == 2  # the first daemon's run is still listed
        assert all(s.complete for s in segments if s.run == segments[0].run)


async def test_replug_resumes_and_an_absent_camera_is_not_retried(tmp_path: Path) -> None:
    prober = FakeProber()
    source = FakeEventSource(prober)
    capture, meta = uvc_webcam(40, port="9")
    source.plug(capture, meta, announce=False)
    async with running_daemon(tmp_path, OVERRIDES, event_source=source, prober=prober) as daemon:
        await asyncio.wait_for(daemon.app.discovery.first_scan_done.wait(), 5)
        supervisor = daemon.app.supervisor

        def spawns() -> int:
            return sum(1 for h in supervisor.history("camera40") if h.role == "continuous")

        await daemon.app.nvr.set_mode("camera40", ModeSettings("continuous", 10, 1.0, 1.0))
        # The fake node cannot be opened: FFmpeg fails and is retried with backoff.
        await wait_until(lambda: spawns() >= 2, 10, "retried")
        source.unplug(capture.path, meta.path)
        await wait_until(
            lambda: (
                daemon.app.cameras.get("camera40") is not None
                and not daemon.app.cameras.get("camera40").connected
            ),  # type: ignore[union-attr]
            5,
            "unplugged",
        )
        await wait_until(lambda: not supervisor.running("camera40"), 5, "no process")
        while_away = spawns()
        await asyncio.sleep(1.5)  # longer than the capped backoff: nothing may be started
        assert spawns() == while_away
        source.plug(capture, meta)
        await wait_until(lambda: spawns() > while_away, 5, "started again after the replug")
        history = [h for h in supervisor.history("camera40") if h.role == "continuous"]
        assert history[-1].argv.count("/dev/video40") == 1
        assert daemon.app.nvr.settings("camera40").mode == "continuous"


async def test_segments_survive_a_daemon_sigkill(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "recording_modes.json").write_text(
        json.dumps(
            {"lab0": {"mode": "continuous", "segment_seconds": 10, "pre_roll": 1, "post_roll": 1}}
        )
    )
    proc = DaemonProcess(tmp_path, OVERRIDES)
    root = tmp_path / "recordings" / ".continuous"
    try:
        await proc.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 40
        while True:
            files = [s for s in seg.scan_camera(root, "lab0")]
            if len(files) >= 2 and files[-1].size > 20000:
                break
            assert loop.time() < deadline, f"no second segment: {files}"
            await asyncio.sleep(0.3)
        proc.signal(signal.SIGKILL)
        await proc.wait()
    finally:
        await proc.stop()
    # FFmpeg died with the daemon (PDEATHSIG); everything written plays, the last file too
    # up to its last flushed fragment (about a second).
    found = seg.scan_camera(root, "lab0")
    assert [s.complete for s in found[:2]] == [True, False]
    assert decodes_cleanly(found[0].path)
    last = found[-1]
    assert decoded_frames(last.path) >= (last.duration - 1.5) * FPS
    async with running_daemon(tmp_path, OVERRIDES) as daemon:
        recovered = [s for s in await daemon.app.nvr.segments("lab0") if s.run == found[0].run]
        assert all(s.complete for s in recovered) and len(recovered) == len(found)
        assert recovered[1].start == pytest.approx(recovered[0].end, abs=1e-6)
        await wait_until(lambda: daemon.app.nvr.is_active("lab0"), 15, "resumed")


async def _call(
    daemon: RunningDaemon, method: str, params: dict[str, Any], role: str = "viewer"
) -> Any:
    async with daemon.client(role) as client:
        return await client.call(method, params)


def _epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def test_per_camera_retain_gb_bounds_the_footage(tmp_path: Path) -> None:
    limit = 150_000  # bytes
    overrides = {
        **OVERRIDES,
        "continuous": {
            **OVERRIDES["continuous"],
            "cameras": {"lab0": {"retain_gb": limit / 1e9}},
        },
    }
    async with running_daemon(tmp_path, overrides) as daemon:
        nvr = daemon.app.nvr
        await nvr.set_mode("lab0", ModeSettings("continuous", 2, 1.0, 1.0))
        await wait_until(lambda: nvr.deleted_segments >= 2, 40, "retention applied")
        await nvr.housekeep_once()
        closed = [s for s in await nvr.segments("lab0") if s.complete]
        assert nvr.is_active("lab0")
        await nvr.set_mode("lab0", ModeSettings("off", 2, 1.0, 1.0))
    assert closed and sum(s.size for s in closed) <= limit


async def test_manual_recording_of_a_held_device_is_cut_from_the_segments(
    tmp_path: Path,
) -> None:
    """MediaMTX off, an exclusive camera recorded continuously from its device: a manual
    recording opens no second reader; its file holds the recorded span."""
    async with running_daemon(tmp_path, OVERRIDES) as daemon:
        nvr = daemon.app.nvr
        await nvr.set_mode("lab0", ModeSettings("continuous", 2, 1.0, 1.0))
        await complete_segments(daemon, "lab0", 1)
        async with daemon.client("operator") as client:
            started = await client.call("start_recording", {"device": "lab0"})
            note = await client.next_notification(timeout=5)
            assert note["params"]["status"] == "STARTED"
            status = await client.call("get_camera_status", {"device": "lab0"})
            assert status["recording"]["filename"] == started["filename"]
            await complete_segments(daemon, "lab0", 4)
            stopped = await client.call("stop_recording", {"device": "lab0"})
            timed = await client.call("start_recording", {"device": "lab0", "duration": 2})
            while True:
                note = await client.next_notification(timeout=15)
                params = note["params"]
                if params.get("status") == "STOPPED" and params["filename"] == timed["filename"]:
                    break
        assert daemon.app.supervisor.peak_readers("lab0") == 1
        recordings = daemon.app.files.directory("recordings")
        await nvr.set_mode("lab0", ModeSettings("off", 2, 1.0, 1.0))
    assert stopped["filename"] == started["filename"] and stopped["status"] == "STOPPED"
    path = recordings / stopped["filename"]
    assert stopped["file_size"] == path.stat().st_size > 0
    assert decodes_cleanly(path)
    span = _epoch(stopped["end_time"]) - _epoch(stopped["start_time"])
    assert len(packets(path)) == pytest.approx(span * FPS, abs=1.2 * FPS)
    assert note["params"]["reason"] == "duration_reached"
    assert note["params"]["filename"] == timed["filename"]
    assert (recordings / timed["filename"]).stat().st_size > 0


async def test_a_segment_being_downloaded_is_not_rolled_over(tmp_path: Path) -> None:
    import aiohttp

    async with running_daemon(tmp_path, OVERRIDES) as daemon:
        nvr = daemon.app.nvr
        directory = seg.camera_dir(nvr.root, "lab0")
        run = "c0d0d0d"
        seg.write_run(directory, seg.RunRecord(run, "lab0", 1_000_000.0, 60))
        names = ["lab0_19700112T134640Z_c0d0d0d.mp4", "lab0_19700112T134740Z_c0d0d0d.mp4"]
        big = 64 << 20  # larger than the socket buffers: the transfer stays in progress
        (directory / names[0]).write_bytes(os.urandom(1 << 20))
        with (directory / names[1]).open("wb") as handle:
            handle.truncate(big)
        seg.append_segment(directory, run, names[0], 0.0, 60.0)
        seg.append_segment(directory, run, names[1], 60.0, 120.0)
        listing = await _call(daemon, "list_segments", {"device": "lab0"})
        url = next(s["download_url"] for s in listing["segments"] if s["filename"] == names[1])
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            assert response.status == 200
            first = await response.content.read(65536)
            await wait_until(lambda: bool(daemon.app.downloads.in_use()), 5, "download in flight")
            count, _freed = await nvr.rollover(10**12)  # wants everything
            assert count == 1
            assert not (directory / names[0]).exists()
            assert (directory / names[1]).exists()
            rest = await response.read()
        assert len(first) + len(rest) == big
        await nvr.rollover(10**12)  # the download is over: now it may go
        assert not (directory / names[1]).exists()
