from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psutil
import pytest

from tests.support.daemon import RunningDaemon, running_daemon


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[RunningDaemon]:
    async with running_daemon(tmp_path) as running:
        yield running


@pytest.fixture(scope="session", autouse=True)
def no_ffmpeg_survives_the_suite() -> Iterator[None]:
    """After the whole suite, no FFmpeg child of the test process may still run."""
    yield
    leftovers = [
        f"{p.pid} {' '.join(p.cmdline()[:6])}"
        for p in psutil.Process().children(recursive=True)
        if "ffmpeg" in p.name()
    ]
    assert not leftovers, f"FFmpeg processes left behind: {leftovers}"
