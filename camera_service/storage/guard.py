"""Stops running recordings before the disk fills: checks usage while there is work to guard."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from camera_service.storage.usage import DiskUsageFn, InsufficientStorage, check_can_write
from camera_service.storage.usage import system_disk_usage as default_disk_usage
from camera_service.supervise import start_supervised

log = logging.getLogger(__name__)


class StorageGuard:
    def __init__(
        self,
        directory: Path,
        block_percent: float,
        *,
        has_work: Callable[[], bool],
        on_critical: Callable[[], Awaitable[None]],
        interval: float = 2.0,
        disk_usage: DiskUsageFn = default_disk_usage,
    ) -> None:
        self.directory = directory
        self.block_percent = block_percent
        self.has_work = has_work
        self.on_critical = on_critical
        self.interval = interval
        self.disk_usage = disk_usage
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = start_supervised("storage-guard", self._run)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def check_once(self) -> bool:
        """True when usage is critical and the guard acted."""
        if not self.has_work():
            return False
        try:
            await check_can_write(self.directory, self.block_percent, self.disk_usage)
        except InsufficientStorage as exc:
            log.warning("storage critical, stopping recordings: %s", exc)
            await self.on_critical()
            return True
        except OSError as exc:
            log.warning("storage check failed: %s", exc)
        return False

    async def _run(self) -> None:
        while True:
            await self.check_once()
            await asyncio.sleep(self.interval)
