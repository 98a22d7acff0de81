"""ffprobe fan-out (issue 10, item 4): a viewer's batches of `get_recording_info` run at most
`ffmpeg.max_probes` ffprobe processes at once, and an unchanged file is probed once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.support.daemon import running_daemon

pytestmark = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None, reason="needs FFmpeg"
)

FILES = 12


def _recording(path: Path) -> None:
    source = ["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10", "-t", "1"]
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            *source,
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            str(path),
        ],
        check=True,
        timeout=60,
    )


async def _batch(ws: ClientConnection, calls: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    frame = [
        {"jsonrpc": "2.0", "method": m, "params": p, "id": i} for i, (m, p) in enumerate(calls)
    ]
    await ws.send(json.dumps(frame))
    answers = json.loads(await ws.recv())
    assert all("result" in a for a in answers), [a for a in answers if "error" in a][:1]
    return [a["result"] for a in sorted(answers, key=lambda a: a["id"])]


async def test_batches_of_recording_info_are_bounded_and_cached(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as daemon:
        recordings = daemon.app.config.storage.recordings_dir
        recordings.mkdir(parents=True, exist_ok=True)
        first = recordings / "camera0_2026-01-01_00-00-00.mp4"
        _recording(first)
        names = [first.name]
        for i in range(1, FILES):
            name = f"camera0_2026-01-01_00-00-{i:02d}.mp4"
            shutil.copy(first, recordings / name)
            names.append(name)
        calls = [("get_recording_info", {"filename": names[i % FILES]}) for i in range(50)]
        probes = daemon.app.files.probes
        async with connect(daemon.ws_url, max_size=None) as ws:
            token = daemon.keys["viewer"]
            await _batch(ws, [("authenticate", {"auth_token": token})])
            answers = await _batch(ws, calls)
            assert all(a["duration"] > 0 for a in answers)
            assert probes.peak <= daemon.app.config.ffmpeg.max_probes == 4
            assert probes.runs == FILES  # one process per file, however often it is asked
            await _batch(ws, calls)
            assert probes.runs == FILES  # unchanged files: answered from the cache
            changed = recordings / names[3]
            stamp = changed.stat().st_mtime + 5
            os.utime(changed, (stamp, stamp))
            [again] = await _batch(ws, [("get_recording_info", {"filename": names[3]})])
            assert again["duration"] > 0
            assert probes.runs == FILES + 1  # a changed file is probed again
