"""Storage policy of the composition root: the configured retention policy, and what happens
when the disk reaches ``block_percent``."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from camera_service.config import Config
from camera_service.storage.retention import RetentionPolicy
from camera_service.storage.usage import system_disk_usage

if TYPE_CHECKING:
    from camera_service.app import Application

log = logging.getLogger("camera_service.app")  # the daemon's own lines keep one logger

ROLLOVER_HEADROOM_PERCENT = 2.0  # delete_oldest frees down to block_percent minus this


def configured_policy(config: Config) -> RetentionPolicy:
    cfg = config.retention
    return RetentionPolicy(
        policy_type=cfg.policy_type,
        max_age_days=cfg.max_age_days,
        max_size_gb=cfg.max_size_gb,
        enabled=cfg.enabled,
    )


async def storage_critical(app: Application) -> None:
    """At block_percent: delete the oldest continuous segments (``when_full:
    delete_oldest``); when that frees nothing, or with ``stop``, stop recording."""
    storage = app.config.storage
    if storage.when_full == "delete_oldest":
        usage = await asyncio.to_thread(system_disk_usage, storage.recordings_dir)
        target = usage.total * (storage.block_percent - ROLLOVER_HEADROOM_PERCENT) / 100
        count, _freed = await app.nvr.rollover(max(int(usage.used - target), 1))
        if count:
            return
    for info in app.recordings.active_all():
        await app._stop_recording(info.device, "storage_critical")
    if app.nvr.has_work():
        log.warning("storage critical: continuous recording paused until there is room")
        await app.nvr.pause_all()
