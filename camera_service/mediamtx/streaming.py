"""Explicit streaming (``start_streaming`` / ``stop_streaming``) of a camera's path.

``start_streaming`` switches a path from on-demand publishing to always-on and waits until
MediaMTX reports it ready; ``stop_streaming`` switches back unless a recording reads the
stream. The wish is kept in :attr:`MediaMTXService.intents`, so a reconcile after a
MediaMTX restart restores it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from camera_service.cameras.model import Camera, CameraStatus
from camera_service.media.source import capture_source_for
from camera_service.mediamtx.errors import MediaMTXUnavailableError, StreamStateError
from camera_service.mediamtx.service import MediaMTXService

log = logging.getLogger(__name__)

READY_POLL_S = 0.1


@dataclass(frozen=True)
class StreamStop:
    start_time: datetime
    end_time: datetime
    stream_continues: bool


def _utc_now() -> datetime:
    return datetime.now(UTC)


async def start_streaming(mtx: MediaMTXService, camera: Camera) -> datetime:
    """Publish the camera now (always-on) and wait until MediaMTX has the stream ready."""
    mtx.require_up()
    if camera.status is not CameraStatus.CONNECTED:
        raise StreamStateError(
            f"Camera {camera.id} is {camera.status.value}.", camera.status.value, ["CONNECTED"]
        )
    if mtx.reads_device(camera.id) and capture_source_for(camera).exclusive:
        raise StreamStateError(
            f"Camera {camera.id} is being recorded from its device; stop the recording "
            "first (or record through MediaMTX).",
            "RECORDING",
            ["IDLE"],
        )
    streaming = mtx.intents.streaming
    new = camera.id not in streaming
    started = streaming.setdefault(camera.id, _utc_now())
    try:
        await mtx.apply(camera)
        await wait_ready(mtx, camera)
    except BaseException:
        if new:
            streaming.pop(camera.id, None)
            mtx.spawn_sync(camera.id)
        raise
    return started


async def stop_streaming(mtx: MediaMTXService, camera: Camera) -> StreamStop:
    """Back to on-demand; the stream continues while a recording reads it."""
    mtx.require_up()
    started = mtx.intents.streaming.get(camera.id)
    if started is None:
        raise StreamStateError(f"Camera {camera.id} is not streaming.", "INACTIVE", ["ACTIVE"])
    del mtx.intents.streaming[camera.id]
    try:
        await mtx.apply(camera)
    except MediaMTXUnavailableError as exc:  # applied by the reconcile after recovery
        log.warning("stop_streaming of %s not applied yet: %s", camera.id, exc.detail)
    return StreamStop(started, _utc_now(), mtx.reads_stream(camera.id))


async def wait_ready(mtx: MediaMTXService, camera: Camera) -> None:
    """Poll the path until MediaMTX reports it ready, within ``mtx.ready_timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + mtx.ready_timeout
    while True:
        path = await mtx.path_state(camera)
        if path is not None and path.is_ready:
            return
        if loop.time() >= deadline:
            raise MediaMTXUnavailableError(
                f"stream {camera.id} not ready within {mtx.ready_timeout:g} s"
            )
        await asyncio.sleep(READY_POLL_S)
