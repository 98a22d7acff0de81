"""ProcessSupervisor against real processes (ffmpeg, sh, python)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from camera_service.media.errors import DeviceBusy, MediaError
from camera_service.media.ffmpeg import ProcessSupervisor
from tests.support.media import FAST_STOP, LAVFI, ffprobe, no_leftover_children

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(30)
__all__ = ["ffprobe", "no_leftover_children"]


@pytest.fixture
async def supervisor(no_leftover_children: None) -> AsyncIterator[ProcessSupervisor]:
    sup = ProcessSupervisor(FAST_STOP)
    yield sup
    await sup.shutdown()
    assert sup.all() == []


def ffmpeg_forever() -> list[str]:
    return [
        *("ffmpeg", "-hide_banner", "-nostats", "-re"),
        *("-f", "lavfi", "-i", LAVFI, "-f", "null", "-"),
    ]


def python_ignoring(*signals: str) -> list[str]:
    ignore = "".join(f"signal.signal(signal.{s}, signal.SIG_IGN);" for s in signals)
    code = f"import signal, sys, time; {ignore} print('ready', file=sys.stderr, flush=True); "
    code += "time.sleep(60)"
    return [sys.executable, "-c", code]


# --------------------------------------------------------------------------- tests


async def test_run_once_success_and_failure(supervisor: ProcessSupervisor) -> None:
    ok = await supervisor.run_once(
        ["ffmpeg", "-hide_banner", "-f", "lavfi", "-i", LAVFI, "-frames:v", "1", "-f", "null", "-"],
        10,
    )
    assert ok.ok and ok.returncode == 0
    bad = await supervisor.run_once(["ffmpeg", "-hide_banner", "-i", "/nonexistent/x.mp4"], 10)
    assert bad.returncode != 0 and not bad.ok
    assert "No such file" in bad.error_summary()
    assert any("No such file" in line for line in bad.stderr_tail)


async def test_missing_binary_raises_media_error(supervisor: ProcessSupervisor) -> None:
    with pytest.raises(MediaError):
        await supervisor.start(["/nonexistent/ffmpeg"], camera_id="c", role="job")
    assert supervisor.all() == []


async def test_graceful_stop_with_q(supervisor: ProcessSupervisor) -> None:
    handle = await supervisor.start(ffmpeg_forever(), camera_id="cam", role="stream")
    await asyncio.wait_for(handle.wait_for_line(r"Output #0"), 10)
    rc = await asyncio.wait_for(supervisor.stop(handle), 10)
    assert rc == 0 and handle.stop_step == "q"
    assert not handle.running and supervisor.running("cam") == []


async def test_escalates_to_sigterm(supervisor: ProcessSupervisor) -> None:
    handle = await supervisor.start(python_ignoring("SIGINT"), role="job")
    await asyncio.wait_for(handle.wait_for_line("ready"), 10)
    rc = await asyncio.wait_for(supervisor.stop(handle), 10)
    assert handle.stop_step == "SIGTERM" and rc == -signal.SIGTERM


async def test_escalates_to_sigkill_and_kills_the_group(supervisor: ProcessSupervisor) -> None:
    script = "trap '' INT TERM; sleep 60 & sleep 60 & echo ready >&2; wait"
    handle = await supervisor.start(["sh", "-c", script], role="job")
    await asyncio.wait_for(handle.wait_for_line("ready"), 10)
    assert handle.pid is not None
    grandchildren = psutil.Process(handle.pid).children()
    assert len(grandchildren) == 2
    rc = await asyncio.wait_for(supervisor.stop(handle), 10)
    assert handle.stop_step == "SIGKILL" and rc == -signal.SIGKILL
    _gone, alive = psutil.wait_procs(grandchildren, timeout=5)
    assert alive == []


async def test_time_limit_stops_process(supervisor: ProcessSupervisor) -> None:
    handle = await supervisor.start(ffmpeg_forever(), role="job", time_limit=0.5)
    rc = await asyncio.wait_for(handle.wait(), 10)
    assert handle.timed_out and rc == 0 and handle.error_summary() == "timed out"


async def test_registry_by_camera_and_role(supervisor: ProcessSupervisor) -> None:
    a1 = await supervisor.start(python_ignoring(), camera_id="a", role="recording", reader=True)
    a2 = await supervisor.start(python_ignoring(), camera_id="a", role="convert")
    b1 = await supervisor.start(python_ignoring(), camera_id="b", role="stream", reader=True)
    assert {h.role for h in supervisor.running("a")} == {"recording", "convert"}
    assert supervisor.readers("a") == [a1]
    assert set(supervisor.all()) == {a1, a2, b1}
    await supervisor.stop(a2)
    assert supervisor.running("a") == [a1]
    await supervisor.shutdown()
    assert supervisor.all() == [] and not any(h.running for h in (a1, a2, b1))
    assert supervisor.history("a") == [a1, a2]
    with pytest.raises(MediaError):
        await supervisor.start(python_ignoring(), role="job")


async def test_exclusive_device_is_never_opened_twice(supervisor: ProcessSupervisor) -> None:
    kwargs: dict[str, Any] = {"camera_id": "x", "reader": True, "exclusive": True}
    first = await supervisor.start(python_ignoring(), role="recording", **kwargs)
    with pytest.raises(DeviceBusy):
        await supervisor.start(python_ignoring(), role="snapshot", busy_timeout=0.2, **kwargs)
    # A waiting reader starts once the holder is gone, never alongside it.
    waiter = asyncio.create_task(
        supervisor.start(python_ignoring(), role="snapshot", busy_timeout=10, **kwargs)
    )
    await asyncio.sleep(0)
    await supervisor.stop(first)
    second = await asyncio.wait_for(waiter, 10)
    assert second.running and not first.running
    assert supervisor.peak_readers("x") == 1


async def test_children_die_with_the_daemon(no_leftover_children: None) -> None:
    """PR_SET_PDEATHSIG: a supervised child is killed when its parent is SIGKILLed."""
    script = (
        "import asyncio\n"
        "from camera_service.media.ffmpeg import ProcessSupervisor\n"
        "async def main():\n"
        "    h = await ProcessSupervisor().start(['sleep', '60'])\n"
        "    print(h.pid, flush=True)\n"
        "    await asyncio.sleep(60)\n"
        "asyncio.run(main())\n"
    )
    daemon = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        stdout=asyncio.subprocess.PIPE,
        cwd=str(ROOT),
    )
    assert daemon.stdout is not None
    child_pid = int(await asyncio.wait_for(daemon.stdout.readline(), 10))
    child = psutil.Process(child_pid)
    os.kill(daemon.pid, signal.SIGKILL)
    await daemon.wait()

    assert await asyncio.to_thread(dies_within, child, 5.0)


def dies_within(proc: psutil.Process, limit: float) -> bool:
    """Whether a process that is not our child ends (or turns zombie) within ``limit`` s."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False
