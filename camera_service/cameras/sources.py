"""Cameras that are not V4L2 devices: configured sources and external streams.

A configured source ``{id, name, input, input_format, exclusive}`` (optional
``resolution``/``fps``, else lavfi ``size=``/``rate=``, and ``pixel_format``) and an
external stream become CONNECTED :class:`~camera_service.cameras.model.Camera` objects
here; the registry checks their ids and lists them. Pure logic, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from camera_service.cameras.model import (
    Camera,
    CameraKind,
    CameraStatus,
    Capabilities,
    SourceSpec,
    parse_resolution,
)

_LAVFI_SIZE_RE = re.compile(r"(?:^|[:=,])(?:size|s)=(\d+x\d+)")
_LAVFI_RATE_RE = re.compile(r"(?:^|[:=,])(?:rate|r)=(\d+)")


def source_mode(
    source: Mapping[str, Any], default_resolution: str, default_fps: int
) -> tuple[str, int]:
    """Resolution/fps of a configured source: explicit keys, else lavfi ``size=``/``rate=``."""
    text = str(source.get("input", ""))
    resolution = source.get("resolution")
    if not isinstance(resolution, str) or parse_resolution(resolution) is None:
        match = _LAVFI_SIZE_RE.search(text)
        resolution = match.group(1) if match else default_resolution
    fps = source.get("fps")
    if not isinstance(fps, int) or isinstance(fps, bool) or fps <= 0:
        match = _LAVFI_RATE_RE.search(text)
        fps = int(match.group(1)) if match else default_fps
    return resolution, fps


def configured_camera(
    src: Mapping[str, Any], default_resolution: str, default_fps: int, now: float
) -> Camera:
    """The camera of a configured source (its ``id`` and ``input`` already checked)."""
    resolution, fps = source_mode(src, default_resolution, default_fps)
    input_format = src.get("input_format")
    return Camera(
        id=str(src["id"]),
        kind=CameraKind.CONFIGURED,
        status=CameraStatus.CONNECTED,
        name=str(src.get("name") or src["id"]),
        resolution=resolution,
        fps=fps,
        capabilities=Capabilities(
            formats=[str(input_format)] if input_format else [],
            resolutions=[resolution],
            fps_options={resolution: [fps]},
        ),
        source=SourceSpec(
            input=str(src["input"]),
            input_format=str(input_format) if input_format else None,
            exclusive=bool(src.get("exclusive", False)),
            pixel_format=str(src["pixel_format"]) if src.get("pixel_format") else None,
        ),
        connected_at=now,
    )


def external_camera(
    cam_id: str, stream_url: str, default_resolution: str, default_fps: int, now: float
) -> Camera:
    """The camera of an external stream (its id already checked)."""
    return Camera(
        id=cam_id,
        kind=CameraKind.EXTERNAL,
        status=CameraStatus.CONNECTED,
        name=cam_id,
        resolution=default_resolution,
        fps=default_fps,
        # stream_type (rtsp/http…) is a label; FFmpeg and MediaMTX read the URL's scheme.
        source=SourceSpec(input=stream_url, input_format=None),
        connected_at=now,
    )
