"""Snapshots that read an exclusive camera's stream while MediaMTX's publisher holds it."""

from __future__ import annotations

from typing import Any

from camera_service.media.snapshots import SnapshotResult, SnapshotService
from camera_service.media.source import CaptureSource
from camera_service.mediamtx.errors import MediaMTXUnavailableError, StreamingDisabledError
from camera_service.mediamtx.service import MediaMTXService


class StreamSnapshots(SnapshotService):
    """SnapshotService that reads an exclusive camera's stream while MediaMTX holds it."""

    def __init__(self, mediamtx: MediaMTXService, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._mediamtx = mediamtx

    async def take(
        self, source: CaptureSource, filename: str | None = None, format: str = "jpg"
    ) -> SnapshotResult:
        return await super().take(await self.source_for(source), filename, format)

    async def source_for(self, source: CaptureSource) -> CaptureSource:
        """Read an exclusive camera's frame from its stream while MediaMTX's publisher holds
        the device (explicit stream, a recording through it, or on-demand readers)."""
        mtx = self._mediamtx
        if not source.exclusive or not mtx.path_usable(source.camera_id):
            return source
        if mtx.stream_in_use(source.camera_id):
            return mtx.stream_source(source)
        camera = mtx.cameras.get(source.camera_id)
        try:
            path = await mtx.path_state(camera) if camera is not None else None
        except (MediaMTXUnavailableError, StreamingDisabledError):
            return source
        return mtx.stream_source(source) if path is not None and path.is_ready else source
