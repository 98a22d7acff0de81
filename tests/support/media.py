"""Shared helpers for tests that run real FFmpeg."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from camera_service.media.process import StopPolicy

LAVFI = "testsrc2=size=320x240:rate=15"
FAST_STOP = StopPolicy(quit_grace=0.3, int_grace=0.3, term_grace=0.5, kill_grace=2.0)


def ffmpeg_children(parent: psutil.Process, with_arg: str | None = None) -> list[psutil.Process]:
    """The FFmpeg processes below ``parent`` (recursive), those with ``with_arg`` in their
    command line if given. A child that ends while it is looked at (a daemon's encoder probe
    finishing, a zombie not reaped yet) is skipped instead of raising NoSuchProcess."""
    found = []
    for proc in parent.children(recursive=True):
        try:
            if "ffmpeg" in proc.name() and (with_arg is None or with_arg in proc.cmdline()):
                found.append(proc)
        except psutil.NoSuchProcess:  # ZombieProcess included
            continue
    return found


def ffprobe(path: Path) -> dict[str, Any]:
    """ffprobe's JSON (format + streams) of a media file; fails the test if unreadable."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    data: dict[str, Any] = json.loads(out.stdout)
    return data


@pytest.fixture
def no_leftover_children() -> Iterator[None]:
    """Every child started during the test is gone (and reaped) when it ends."""
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    yield
    left = [p for p in me.children(recursive=True) if p.pid not in before]
    alive: list[psutil.Process] = []
    zombies: list[psutil.Process] = []
    for proc in left:
        try:
            (zombies if proc.status() == psutil.STATUS_ZOMBIE else alive).append(proc)
        except psutil.NoSuchProcess:
            continue
    assert not alive, f"leftover child processes: {alive}"
    assert not zombies, f"zombie child processes: {zombies}"
