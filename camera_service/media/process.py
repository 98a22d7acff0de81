"""One supervised child: its handle (state, stderr tail, progress, waiters) and results."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from camera_service.media.errors import MediaError
from camera_service.media.ffmpeg_output import summarize_stderr

STDERR_TAIL_LINES = 50


@dataclass(frozen=True)
class StopPolicy:
    """Grace periods (seconds) of each step of the stop escalation."""

    quit_grace: float = 5.0
    int_grace: float = 3.0
    term_grace: float = 3.0
    kill_grace: float = 5.0


@dataclass(frozen=True)
class RunResult:
    returncode: int
    stderr_tail: list[str]
    timed_out: bool
    elapsed: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def error_summary(self) -> str:
        if self.timed_out:
            return "timed out"
        return summarize_stderr(self.stderr_tail, self.returncode)


_ids = itertools.count(1)


@dataclass(eq=False)
class ProcessHandle:
    """One supervised child. Created by :meth:`ProcessSupervisor.start`."""

    argv: list[str]
    camera_id: str | None
    role: str
    reader: bool
    preemptible: bool = False  # an exclusive claim on the device stops it instead of waiting
    raw_stdout: bool = False  # stdout is a pipe the owner reads (not -progress output)
    id: int = field(default_factory=lambda: next(_ids))
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    started_monotonic: float = field(default_factory=time.monotonic)
    ended_monotonic: float | None = None
    returncode: int | None = None
    stop_requested: bool = False
    stop_step: str | None = None  # last escalation step used: q, SIGINT, SIGTERM, SIGKILL
    timed_out: bool = False
    progress: dict[str, str] = field(default_factory=dict)
    stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=STDERR_TAIL_LINES))
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    progress_seen: asyncio.Event = field(default_factory=asyncio.Event)
    process: asyncio.subprocess.Process | None = None
    _proc_done: asyncio.Event = field(default_factory=asyncio.Event)
    _stop_task: asyncio.Task[int] | None = None
    _line_waiters: list[tuple[re.Pattern[str], asyncio.Future[str]]] = field(default_factory=list)
    _progress_waiters: list[
        tuple[Callable[[dict[str, str]], bool], asyncio.Future[dict[str, str]]]
    ] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return not self.exited.is_set()

    @property
    def elapsed(self) -> float:
        end = self.ended_monotonic if self.ended_monotonic is not None else time.monotonic()
        return end - self.started_monotonic

    async def wait(self) -> int:
        """Wait until the process exited and its pipes were drained; returns the exit code."""
        await self.exited.wait()
        assert self.returncode is not None
        return self.returncode

    async def _wait_process(self, grace: float) -> bool:
        try:
            await asyncio.wait_for(self._proc_done.wait(), grace)
        except TimeoutError:
            return False
        return True

    def error_summary(self) -> str:
        if self.timed_out:
            return "timed out"
        return summarize_stderr(self.stderr_tail, self.returncode)

    async def wait_for_line(self, pattern: str) -> str:
        """First stderr line (already kept or still to come) matching the regex ``pattern``.

        Raises :class:`MediaError` if the process exits first; bound it with a timeout.
        """
        regex = re.compile(pattern)
        for line in self.stderr_tail:
            if regex.search(line):
                return line
        if self.exited.is_set():
            raise MediaError("process exited", self.error_summary())
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        entry = (regex, future)
        self._line_waiters.append(entry)
        try:
            return await future
        finally:
            with contextlib.suppress(ValueError):
                self._line_waiters.remove(entry)

    @property
    def media_time(self) -> float:
        """Seconds of media FFmpeg reported writing (``-progress`` ``out_time_us``), else 0."""
        try:
            return int(self.progress.get("out_time_us", "0")) / 1e6
        except ValueError:
            return 0.0

    async def wait_for_progress(
        self, predicate: Callable[[dict[str, str]], bool] = lambda _block: True
    ) -> dict[str, str]:
        """Next ``-progress`` block (or the current one) satisfying ``predicate``.

        Needs ``capture_progress=True``. Raises :class:`MediaError` if the process exits first.
        """
        if self.progress and predicate(self.progress):
            return self.progress
        if self.exited.is_set():
            raise MediaError("process exited", self.error_summary())
        future: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()
        entry = (predicate, future)
        self._progress_waiters.append(entry)
        try:
            return await future
        finally:
            with contextlib.suppress(ValueError):
                self._progress_waiters.remove(entry)

    def _add_progress(self, block: dict[str, str]) -> None:
        self.progress = block
        self.progress_seen.set()
        for predicate, future in self._progress_waiters:
            if not future.done() and predicate(block):
                future.set_result(block)

    def _add_line(self, line: str) -> None:
        self.stderr_tail.append(line)
        for regex, future in self._line_waiters:
            if not future.done() and regex.search(line):
                future.set_result(line)

    def _fail_waiters(self) -> None:
        futures: list[asyncio.Future[Any]] = [f for _r, f in self._line_waiters]
        futures += [f for _p, f in self._progress_waiters]
        for future in futures:
            if not future.done():
                future.set_exception(MediaError("process exited", self.error_summary()))

    def __repr__(self) -> str:
        return (
            f"<ProcessHandle #{self.id} pid={self.pid} camera={self.camera_id} "
            f"role={self.role} rc={self.returncode}>"
        )
