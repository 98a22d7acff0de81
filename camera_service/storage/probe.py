"""ffprobe on stored files: a bounded number of processes at once and a cache of answers.

`ProbePool.probe(key, run)` runs `run()` (which starts one ffprobe process) with at most
`max_processes` of them at once; a call waits its turn for at most `wait_timeout` seconds,
then fails with `ProbeBusy`. Answers are cached by `key`, which callers build from the
file's path, size and modification time (and the ffprobe arguments), so a changed file is
probed again and an unchanged one never twice; identical questions asked while one is
running share that run. Failures are not cached (a file still being written may read fine
a moment later). The cache keeps the `cache_entries` most recently used answers.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

Doc = dict[str, Any]


class ProbeBusy(Exception):
    """No probe slot became free within the wait timeout."""


class ProbePool:
    def __init__(
        self, max_processes: int = 4, cache_entries: int = 512, wait_timeout: float = 15.0
    ) -> None:
        self.max_processes = max_processes
        self.cache_entries = cache_entries
        self.wait_timeout = wait_timeout
        self._slots = asyncio.Semaphore(max_processes)
        self._cache: OrderedDict[Hashable, Doc] = OrderedDict()
        self._running: dict[Hashable, asyncio.Task[Doc]] = {}
        self.active = 0  # probe processes running now
        self.peak = 0  # the most that ever ran at once
        self.runs = 0  # probe processes started

    async def probe(self, key: Hashable, run: Callable[[], Awaitable[Doc]]) -> Doc:
        """The (read-only) answer for `key`, from the cache, a run in progress, or `run()`.

        The run is a task of its own, so a caller that goes away (cancelled) neither cancels
        it for the others waiting on it nor loses the answer for the cache."""
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        task = self._running.get(key)
        if task is None:
            task = asyncio.create_task(self._run_and_remember(key, run))
            task.add_done_callback(_retrieve)
            self._running[key] = task
        return await asyncio.shield(task)

    async def _run_and_remember(self, key: Hashable, run: Callable[[], Awaitable[Doc]]) -> Doc:
        try:
            doc = await self._run(run)
        finally:
            self._running.pop(key, None)
        self._remember(key, doc)
        return doc

    async def _run(self, run: Callable[[], Awaitable[Doc]]) -> Doc:
        try:
            async with asyncio.timeout(self.wait_timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise ProbeBusy(
                f"{self.max_processes} file probes already running for {self.wait_timeout:g} s"
            ) from None
        self.active += 1
        self.peak = max(self.peak, self.active)
        self.runs += 1
        try:
            return await run()
        finally:
            self.active -= 1
            self._slots.release()

    def _remember(self, key: Hashable, doc: Doc) -> None:
        self._cache[key] = doc
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_entries:
            self._cache.popitem(last=False)


def _retrieve(task: asyncio.Task[Doc]) -> None:
    """Mark a failed run's exception as seen when every caller had gone away."""
    if not task.cancelled():
        task.exception()
