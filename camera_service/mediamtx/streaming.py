"""Explicit streaming (``start_streaming`` / ``stop_streaming``) of a camera's path.

``start_streaming`` makes sure the path exists, holds a reader on it (:mod:`.holder`) so
MediaMTX keeps the on-demand publisher running, and waits until MediaMTX reports the stream
ready; ``stop_streaming`` drops the hold. The path configuration is not touched by either,
so viewers and recordings reading the stream are never cut (MediaMTX restarts a path on
any configuration change but ``record*``). The wish is kept in
:attr:`MediaMTXService.intents`, and the held reader reconnects by itself after a MediaMTX
restart.
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
HOLD_REASON = "streaming"


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
        stale = await mtx.apply(camera)
        mtx.holders.hold(camera.id, HOLD_REASON)
        await wait_ready(mtx, camera, stale_ready_time=stale)
    except BaseException:
        if new:
            streaming.pop(camera.id, None)
            await mtx.holders.release(camera.id, HOLD_REASON)
        raise
    return started


async def stop_streaming(mtx: MediaMTXService, camera: Camera) -> StreamStop:
    """Back to on-demand; the stream continues while a recording reads it."""
    mtx.require_up()
    started = mtx.intents.streaming.get(camera.id)
    if started is None:
        raise StreamStateError(f"Camera {camera.id} is not streaming.", "INACTIVE", ["ACTIVE"])
    del mtx.intents.streaming[camera.id]
    await mtx.holders.release(camera.id, HOLD_REASON)
    return StreamStop(started, _utc_now(), mtx.reads_stream(camera.id))


async def wait_ready(
    mtx: MediaMTXService, camera: Camera, *, stale_ready_time: str | None = None
) -> None:
    """Poll the path until MediaMTX reports it ready, within ``mtx.ready_timeout``.

    A path still ready since ``stale_ready_time`` is the one a write is replacing (MediaMTX
    applies configuration after its 200), so it does not count.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + mtx.ready_timeout
    while True:
        path = await mtx.path_state(camera)
        if (
            path is not None
            and path.is_ready
            and not (stale_ready_time is not None and path.ready_time == stale_ready_time)
        ):
            return
        if loop.time() >= deadline:
            raise MediaMTXUnavailableError(
                f"stream {camera.id} not ready within {mtx.ready_timeout:g} s"
            )
        await asyncio.sleep(READY_POLL_S)
