"""Process supervision: the only way the daemon starts a child process.

Every child gets its own process group, dies with the daemon (``PR_SET_PDEATHSIG``), has its
stderr captured (last lines kept for error messages, everything logged at debug), may have a run
timeout, and is stopped by escalation: ``q`` on stdin → SIGINT → SIGTERM → SIGKILL to the group.
Children are always reaped. A registry keyed by camera id records which processes read which
device, so the single-reader rule can be enforced and checked.

Here: the supervisor (registry, reader and exclusive-claim bookkeeping, watching, stopping).
Elsewhere: the handle (``process.py``), spawning (``spawn.py``), output parsing
(``ffmpeg_output.py``) and the errors (``errors.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections import Counter, deque
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from camera_service.media.errors import DeviceBusy, MediaError
from camera_service.media.ffmpeg_output import LineSplitter, ProgressParser, describe_returncode
from camera_service.media.process import ProcessHandle, RunResult, StopPolicy
from camera_service.media.spawn import spawn_process

log = logging.getLogger(__name__)

_DRAIN_TIMEOUT = 2.0


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
            handle.process = await spawn_process(handle.argv, capture_progress or raw_stdout, env)
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
