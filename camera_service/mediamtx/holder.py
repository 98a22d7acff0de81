"""Readers the daemon holds on a camera's path, so an on-demand path stays published.

MediaMTX closes a path, and every reader on it, when its configuration changes anywhere
but the ``record*`` fields (``internal/core/path_manager.go``, ``pathConfCanBeUpdated``).
Switching a path between ``runOnDemand`` and ``runOnInit`` (or ``sourceOnDemand``) to
stream it explicitly would cut every viewer and every FFmpeg recording that reads it. So
paths stay on demand, and ``start_streaming`` or a recording in MediaMTX holds one reader
of their own: an FFmpeg that reads the RTSP stream and discards it (``-c copy -f null``,
no decoding). MediaMTX keeps the publisher running while it is connected;
``runOnDemandCloseAfter`` after the last hold ends, the publisher stops as for any reader.

A holder restarts its reader when it exits (MediaMTX restarted, path not there yet) after a
delay that doubles up to :data:`MAX_RETRY_S` and resets once a reader ran for
:data:`STABLE_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from camera_service.media.spawn import with_death_signal

log = logging.getLogger(__name__)

FIRST_RETRY_S = 0.2
MAX_RETRY_S = 5.0
STABLE_S = 10.0
STOP_GRACE_S = 3.0

#: Why a camera's stream is held: ``start_streaming`` or a recording in MediaMTX.
HoldReason = str


def reader_argv(ffmpeg: str, url: str) -> list[str]:
    """FFmpeg that reads ``url`` over RTSP/TCP and throws the packets away."""
    return [
        ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error",
        "-rtsp_transport", "tcp", "-i", url,
        "-map", "0", "-c", "copy", "-f", "null", "-",
    ]  # fmt: skip


@dataclass(eq=False)
class _Hold:
    reasons: set[HoldReason] = field(default_factory=set)
    task: asyncio.Task[None] | None = None
    process: asyncio.subprocess.Process | None = None
    starts: int = 0


class StreamHolders:
    """One held reader per camera while any reason to hold it remains."""

    def __init__(self, url_for: Callable[[str], str], *, ffmpeg: str = "ffmpeg") -> None:
        self._url_for = url_for
        self._ffmpeg = ffmpeg
        self._holds: dict[str, _Hold] = {}

    def held(self, camera_id: str) -> bool:
        return camera_id in self._holds

    def reasons(self, camera_id: str) -> frozenset[HoldReason]:
        hold = self._holds.get(camera_id)
        return frozenset(hold.reasons) if hold is not None else frozenset()

    def reading(self, camera_id: str) -> bool:
        """The held reader of the camera is running now (it counts among the readers)."""
        hold = self._holds.get(camera_id)
        return hold is not None and hold.process is not None and hold.process.returncode is None

    def hold(self, camera_id: str, reason: HoldReason) -> None:
        """Hold the camera's stream for ``reason`` (idempotent)."""
        hold = self._holds.get(camera_id)
        if hold is None:
            hold = self._holds[camera_id] = _Hold()
            hold.task = asyncio.create_task(self._run(camera_id, hold), name=f"hold-{camera_id}")
        hold.reasons.add(reason)

    async def release(self, camera_id: str, reason: HoldReason) -> None:
        """Drop ``reason``; the reader ends when no reason is left."""
        hold = self._holds.get(camera_id)
        if hold is None:
            return
        hold.reasons.discard(reason)
        if not hold.reasons:
            del self._holds[camera_id]
            await self._end(hold)

    async def release_all(self, camera_id: str) -> None:
        hold = self._holds.pop(camera_id, None)
        if hold is not None:
            await self._end(hold)

    async def stop(self) -> None:
        holds = list(self._holds.values())
        self._holds.clear()
        await asyncio.gather(*(self._end(h) for h in holds), return_exceptions=True)

    async def _end(self, hold: _Hold) -> None:
        if hold.task is not None:
            hold.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await hold.task

    async def _run(self, camera_id: str, hold: _Hold) -> None:
        loop = asyncio.get_running_loop()
        delay = FIRST_RETRY_S
        while True:
            started = loop.time()
            try:
                await self._read_once(camera_id, hold)
            except OSError as exc:
                log.warning("stream holder of %s cannot start FFmpeg: %s", camera_id, exc)
            if loop.time() - started >= STABLE_S:
                delay = FIRST_RETRY_S
            await asyncio.sleep(delay)  # retry delay of a reconnect loop, not synchronisation
            delay = min(delay * 2, MAX_RETRY_S)

    async def _read_once(self, camera_id: str, hold: _Hold) -> None:
        argv, preexec = with_death_signal(reader_argv(self._ffmpeg, self._url_for(camera_id)))
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            preexec_fn=preexec,
        )
        hold.process, hold.starts = proc, hold.starts + 1
        try:
            code = await proc.wait()
            log.debug("stream holder of %s: reader exited (%s)", camera_id, code)
        finally:
            hold.process = None
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(asyncio.shield(proc.wait()), STOP_GRACE_S)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
