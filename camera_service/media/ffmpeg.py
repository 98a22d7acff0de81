"""Process supervision: the only way the daemon starts a child process.

Every child gets its own process group, dies with the daemon (``PR_SET_PDEATHSIG``), has its
stderr captured (last lines kept for error messages, everything logged at debug), may have a run
timeout, and is stopped by escalation: ``q`` on stdin → SIGINT → SIGTERM → SIGKILL to the group.
Children are always reaped. A registry keyed by camera id records which processes read which
device, so the single-reader rule can be enforced and checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import itertools
import logging
import os
import re
import shutil
import signal
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)

STDERR_TAIL_LINES = 50
_MAX_LINE = 2000
_DRAIN_TIMEOUT = 2.0


# --------------------------------------------------------------------------- errors


class MediaServiceError(Exception):
    """Base of every error the media layer raises on purpose."""

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail if detail is not None else message


class MediaError(MediaServiceError):
    """FFmpeg (or another child) failed or could not be started (→ dependency failed)."""


class DeviceBusy(MediaServiceError):
    """A single-reader device is held by another process (→ invalid state)."""


class AlreadyRecording(MediaServiceError):
    """The camera is already being recorded (→ invalid state)."""


class NotRecording(MediaServiceError):
    """The camera is not being recorded (→ invalid state)."""


class InvalidTarget(MediaServiceError):
    """The requested output filename is unsafe or already exists (→ invalid params)."""


# --------------------------------------------------------------------------- pure helpers


class LineSplitter:
    """Splits a byte-less text stream into lines on ``\\n`` or ``\\r`` (FFmpeg uses both)."""

    def __init__(self, max_line: int = _MAX_LINE) -> None:
        self._buf = ""
        self._max = max_line

    def feed(self, text: str) -> list[str]:
        parts = re.split(r"[\r\n]", self._buf + text)
        self._buf = parts.pop()
        if len(self._buf) > self._max:
            parts.append(self._buf)
            self._buf = ""
        return [p[: self._max] for p in parts if p.strip()]

    def flush(self) -> list[str]:
        rest, self._buf = self._buf, ""
        return [rest[: self._max]] if rest.strip() else []


_ERROR_HINT = re.compile(
    r"error|invalid|no such|denied|cannot|could not|failed|not found|busy|unable|"
    r"unrecognized|unknown|no space|broken",
    re.IGNORECASE,
)


def describe_returncode(returncode: int | None) -> str:
    if returncode is None:
        return "process still running"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"process killed by {name}"
    return f"process exited with code {returncode}"


def summarize_stderr(lines: Iterable[str], returncode: int | None) -> str:
    """The most telling stderr line: the last that looks like an error; else, when killed by a
    signal, that signal; else the last line or the exit status."""
    items = [line.strip() for line in lines if line.strip()]
    for line in reversed(items):
        if _ERROR_HINT.search(line):
            return line
    if items and (returncode is None or returncode >= 0):
        return items[-1]
    return describe_returncode(returncode)


class ProgressParser:
    """Parses FFmpeg ``-progress`` output (``key=value`` lines, blocks end with ``progress=``)."""

    def __init__(self) -> None:
        self._block: dict[str, str] = {}

    def feed(self, line: str) -> dict[str, str] | None:
        key, sep, value = line.strip().partition("=")
        if not sep:
            return None
        self._block[key.strip()] = value.strip()
        if key.strip() != "progress":
            return None
        block, self._block = self._block, {}
        return block


# --------------------------------------------------------------------------- child setup

_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl: Callable[..., int] = libc.prctl
    except (OSError, AttributeError):
        return None
    return prctl


_PRCTL = _load_prctl()
# util-linux's setpriv sets PDEATHSIG and then execs the program. Using it instead of a
# preexec_fn lets subprocess spawn with vfork: ~2 ms instead of ~10 ms of forking the daemon.
_SETPRIV = shutil.which("setpriv")
_SH = shutil.which("sh")
# setpriv does not check that the daemon is still its parent once PDEATHSIG is set: a daemon
# killed between the spawn and setpriv's prctl would leave the child running forever. So
# setpriv execs a shell that makes that check (like _child_setup does) and then execs the
# program; a death after prctl is delivered as SIGKILL, one before it is caught by the check.
_PARENT_CHECK = '[ "$PPID" = {pid} ] || exit 127; exec "$0" "$@"'


def with_death_signal(argv: list[str]) -> tuple[list[str], Callable[[], None] | None]:
    """argv and preexec_fn that make the child get SIGKILL when the daemon dies."""
    if _SETPRIV is not None and _SH is not None:
        if shutil.which(argv[0]) is None:  # setpriv would start and then fail to exec
            raise FileNotFoundError(errno.ENOENT, "no such program", argv[0])
        check = _PARENT_CHECK.format(pid=os.getpid())
        return [_SETPRIV, "--pdeathsig", "KILL", "--", _SH, "-c", check, *argv], None
    return argv, _child_setup(os.getpid())


def _child_setup(parent_pid: int) -> Callable[[], None] | None:
    """``preexec_fn`` that makes the child receive SIGKILL when the daemon dies (Linux)."""
    prctl = _PRCTL
    if prctl is None:
        return None
    sigkill = int(signal.SIGKILL)

    def setup() -> None:
        prctl(_PR_SET_PDEATHSIG, sigkill, 0, 0, 0)
        if os.getppid() != parent_pid:  # the daemon died before prctl took effect
            os._exit(127)

    return setup


# --------------------------------------------------------------------------- handles


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


async def _wait_any(events: Sequence[asyncio.Event], limit: float) -> None:
    tasks = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(tasks, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


# --------------------------------------------------------------------------- supervisor


class ProcessSupervisor:
    """Starts, tracks, stops and reaps every child process of the daemon."""

    def __init__(self, stop_policy: StopPolicy | None = None, history_size: int = 500) -> None:
        self.stop_policy = stop_policy or StopPolicy()
        self._running: dict[int, ProcessHandle] = {}
        self._history: deque[ProcessHandle] = deque(maxlen=history_size)
        self._peak_readers: dict[str, int] = {}
        self._tasks: set[asyncio.Task[object]] = set()
        self._closed = False
        self._start_listeners: list[Callable[[ProcessHandle], None]] = []
        self.unexpected_exits: Counter[str] = Counter()  # per camera: failed, not stopped

    # -- registry --------------------------------------------------------------------------

    def running(self, camera_id: str) -> list[ProcessHandle]:
        """Live (starting or running) processes of one camera."""
        return [h for h in self._running.values() if h.camera_id == camera_id]

    def readers(self, camera_id: str) -> list[ProcessHandle]:
        """Live processes that read the camera's device."""
        return [h for h in self.running(camera_id) if h.reader]

    def all(self) -> list[ProcessHandle]:
        return list(self._running.values())

    def history(self, camera_id: str | None = None) -> list[ProcessHandle]:
        """Recently started processes (running or not), oldest first."""
        return [h for h in self._history if camera_id is None or h.camera_id == camera_id]

    def peak_readers(self, camera_id: str) -> int:
        """Highest number of simultaneous readers ever seen for the camera."""
        return self._peak_readers.get(camera_id, 0)

    def _register(self, handle: ProcessHandle) -> None:
        self._running[handle.id] = handle
        self._history.append(handle)
        if handle.reader and handle.camera_id is not None:
            count = len(self.readers(handle.camera_id))
            peak = max(self._peak_readers.get(handle.camera_id, 0), count)
            self._peak_readers[handle.camera_id] = peak

    async def _claim_device(self, handle: ProcessHandle, busy_timeout: float) -> None:
        assert handle.camera_id is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + busy_timeout
        while busy := self.readers(handle.camera_id):
            for holder in busy:
                if holder.preemptible:  # e.g. the live-frame reader: it yields the device
                    self._track(self.stop(holder))
            remaining = deadline - loop.time()
            if remaining <= 0:
                roles = ", ".join(sorted({h.role for h in busy}))
                raise DeviceBusy(f"camera {handle.camera_id} is in use", f"device held by: {roles}")
            await _wait_any([h.exited for h in busy], remaining)
        self._register(handle)  # synchronously after the check: no other start can interleave

    def add_start_listener(self, listener: Callable[[ProcessHandle], None]) -> None:
        """Called with every handle right after its process was spawned (e.g. to re-apply
        camera controls once a capture is streaming); must not block or raise."""
        self._start_listeners.append(listener)

    # -- start -----------------------------------------------------------------------------

    async def start(
        self,
        argv: Sequence[str],
        *,
        camera_id: str | None = None,
        role: str = "job",
        reader: bool = False,
        exclusive: bool = False,
        busy_timeout: float = 0.0,
        time_limit: float | None = None,
        capture_progress: bool = False,
        raw_stdout: bool = False,
        preemptible: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> ProcessHandle:
        """Spawn ``argv`` (argv[0] is the program) under supervision.

        ``reader``: the process opens the camera's device. With ``exclusive`` another live
        reader of that camera makes this wait up to ``busy_timeout`` s, then :class:`DeviceBusy`.
        ``time_limit``: stop the process (escalation) after that many seconds.
        ``capture_progress``: stdout carries FFmpeg ``-progress pipe:1`` output.
        ``raw_stdout``: stdout is a pipe the caller reads from ``handle.process.stdout``.
        ``preemptible``: another exclusive reader's claim stops this one instead of waiting.
        """
        if self._closed:
            raise MediaError("process supervisor is shut down")
        handle = ProcessHandle(
            argv=list(argv),
            camera_id=camera_id,
            role=role,
            reader=reader,
            preemptible=preemptible,
            raw_stdout=raw_stdout,
        )
        if exclusive and reader and camera_id is not None:
            await self._claim_device(handle, busy_timeout)
        else:
            self._register(handle)
        try:
            handle.process = await self._spawn(handle.argv, capture_progress or raw_stdout, env)
        except BaseException as exc:
            self._running.pop(handle.id, None)
            handle.returncode = -1
            handle.ended_monotonic = time.monotonic()
            handle._proc_done.set()
            handle.exited.set()
            if isinstance(exc, OSError):
                raise MediaError(f"cannot start {argv[0]}", str(exc)) from exc
            raise
        log.debug("started %r: %s", handle, " ".join(handle.argv))
        self._track(self._watch(handle, time_limit))
        for listener in self._start_listeners:
            try:
                listener(handle)
            except Exception:
                log.exception("process start listener failed")
        return handle

    @staticmethod
    async def _spawn(
        argv: list[str], capture_progress: bool, env: Mapping[str, str] | None
    ) -> asyncio.subprocess.Process:
        command, preexec = with_death_signal(argv)
        return await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE if capture_progress else asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            preexec_fn=preexec,
            env=dict(env) if env is not None else None,
        )

    def _track(self, coro: Coroutine[Any, Any, object]) -> None:
        task: asyncio.Task[object] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- watching --------------------------------------------------------------------------

    async def _watch(self, handle: ProcessHandle, time_limit: float | None) -> None:
        proc = handle.process
        assert proc is not None
        pumps = [asyncio.create_task(self._pump_stderr(handle, proc))]
        if proc.stdout is not None and not handle.raw_stdout:
            pumps.append(asyncio.create_task(self._pump_progress(handle, proc.stdout)))
        timer = None
        if time_limit is not None:
            timer = asyncio.get_running_loop().call_later(time_limit, self._on_timeout, handle)
        try:
            rc = await proc.wait()
        except asyncio.CancelledError:
            self._signal_group(handle, signal.SIGKILL)
            raise
        finally:
            if timer is not None:
                timer.cancel()
        handle.returncode = rc
        handle.ended_monotonic = time.monotonic()
        if rc != 0 and not handle.stop_requested and handle.camera_id is not None:
            self.unexpected_exits[handle.camera_id] += 1
        handle._proc_done.set()
        _done, pending = await asyncio.wait(pumps, timeout=_DRAIN_TIMEOUT)
        for task in pending:  # a grandchild may hold the pipe open
            task.cancel()
        self._running.pop(handle.id, None)
        handle.exited.set()
        handle._fail_waiters()
        log.debug("%r exited: %s", handle, describe_returncode(rc))

    async def _pump_stderr(self, handle: ProcessHandle, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        splitter = LineSplitter()
        while chunk := await proc.stderr.read(4096):
            self._keep_lines(handle, splitter.feed(chunk.decode("utf-8", "replace")))
        self._keep_lines(handle, splitter.flush())

    @staticmethod
    def _keep_lines(handle: ProcessHandle, lines: list[str]) -> None:
        for line in lines:
            handle._add_line(line)
            log.debug("[%s/%s pid %s] %s", handle.camera_id, handle.role, handle.pid, line)

    @staticmethod
    async def _pump_progress(handle: ProcessHandle, stdout: asyncio.StreamReader) -> None:
        parser = ProgressParser()
        while line := await stdout.readline():
            block = parser.feed(line.decode("utf-8", "replace"))
            if block is not None:
                handle._add_progress(block)

    def _on_timeout(self, handle: ProcessHandle) -> None:
        if handle.exited.is_set():
            return
        log.warning("%r timed out after %.1f s, stopping it", handle, handle.elapsed)
        handle.timed_out = True
        self._track(self.stop(handle))

    # -- stopping --------------------------------------------------------------------------

    async def stop(self, handle: ProcessHandle, policy: StopPolicy | None = None) -> int:
        """Stop by escalation (q → SIGINT → SIGTERM → SIGKILL); returns the exit code."""
        if handle.exited.is_set():
            assert handle.returncode is not None
            return handle.returncode
        if handle._stop_task is None:
            handle._stop_task = asyncio.create_task(
                self._escalate(handle, policy or self.stop_policy)
            )
        return await asyncio.shield(handle._stop_task)

    async def _escalate(self, handle: ProcessHandle, policy: StopPolicy) -> int:
        handle.stop_requested = True
        steps: list[tuple[str, signal.Signals | None, float]] = [
            ("q", None, policy.quit_grace),
            ("SIGINT", signal.SIGINT, policy.int_grace),
            ("SIGTERM", signal.SIGTERM, policy.term_grace),
            ("SIGKILL", signal.SIGKILL, policy.kill_grace),
        ]
        for name, sig, grace in steps:
            if handle._proc_done.is_set():
                break
            handle.stop_step = name
            if sig is None:
                await self._send_quit(handle)
            else:
                log.info("%r did not stop, sending %s", handle, name)
                self._signal_group(handle, sig)
            if await handle._wait_process(grace):
                break
        else:
            log.error("%r survived SIGKILL for %.1f s; still waiting", handle, policy.kill_grace)
        rc = await handle.wait()
        self._signal_group(handle, signal.SIGKILL)  # stragglers left in the group, if any
        return rc

    @staticmethod
    async def _send_quit(handle: ProcessHandle) -> None:
        stdin = handle.process.stdin if handle.process is not None else None
        if stdin is None:
            return
        with contextlib.suppress(OSError, RuntimeError):
            stdin.write(b"q")
            await asyncio.wait_for(stdin.drain(), 1.0)
        with contextlib.suppress(OSError, RuntimeError, TimeoutError):
            stdin.close()

    @staticmethod
    def _signal_group(handle: ProcessHandle, sig: signal.Signals) -> None:
        if handle.pid is None:
            return
        try:
            os.killpg(handle.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError as exc:  # pragma: no cover - pid reuse by another user
            log.warning("cannot signal process group %s: %s", handle.pid, exc)

    # -- helpers ---------------------------------------------------------------------------

    async def run_once(
        self,
        argv: Sequence[str],
        time_limit: float,
        *,
        camera_id: str | None = None,
        role: str = "job",
        reader: bool = False,
        exclusive: bool = False,
        busy_timeout: float = 0.0,
    ) -> RunResult:
        """Run a short job to completion (stopped after ``time_limit`` s)."""
        handle = await self.start(
            argv,
            camera_id=camera_id,
            role=role,
            reader=reader,
            exclusive=exclusive,
            busy_timeout=busy_timeout,
            time_limit=time_limit,
        )
        try:
            rc = await handle.wait()
        except asyncio.CancelledError:
            self._track(self.stop(handle))
            raise
        return RunResult(rc, list(handle.stderr_tail), handle.timed_out, handle.elapsed)

    async def shutdown(self) -> None:
        """Refuse new processes, stop every running one, wait for the watchers."""
        self._closed = True
        await asyncio.gather(*(self.stop(h) for h in self.all()), return_exceptions=True)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=_DRAIN_TIMEOUT + 1)


FFmpegSupervisor = ProcessSupervisor
