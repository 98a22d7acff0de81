"""Capture sources: how FFmpeg opens a camera (V4L2 node, lavfi test pattern, RTSP, file)."""

from __future__ import annotations

from dataclasses import dataclass

from camera_service.cameras.model import Camera, CameraKind
from camera_service.media.capture import v4l2_input_options

_NETWORK_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "rtmps://", "http://", "https://", "srt://")


@dataclass(frozen=True)
class CaptureSource:
    """One camera input as FFmpeg sees it.

    ``input_format`` is the FFmpeg demuxer (``lavfi``, ``v4l2``, ``rtsp`` …); ``None`` lets the
    input decide (``/dev/video*`` → v4l2, URLs by scheme, anything else is a file).
    ``exclusive`` marks a single-open device: at most one process may read it at a time.
    ``is_h264`` means the input already delivers H.264, so recordings copy it.
    """

    camera_id: str
    input: str
    input_format: str | None = None
    exclusive: bool = False
    is_h264: bool = False
    resolution: str | None = None
    fps: int | None = None
    pixel_format: str | None = None  # V4L2 capture format (fourcc); None lets FFmpeg choose

    @property
    def kind(self) -> str:
        """One of ``lavfi``, ``v4l2``, ``rtsp``, ``network``, ``file`` or the demuxer name."""
        fmt = (self.input_format or "").lower()
        if fmt in ("lavfi", "v4l2", "rtsp"):
            return fmt
        if fmt:
            return fmt
        if self.input.startswith("/dev/video"):
            return "v4l2"
        if self.input.startswith(("rtsp://", "rtsps://")):
            return "rtsp"
        if self.input.startswith(_NETWORK_SCHEMES):
            return "network"
        return "file"

    def input_args(self) -> list[str]:
        """FFmpeg input options ending with ``-i <input>``; live sources never end by themselves."""
        kind = self.kind
        if kind == "lavfi":
            # -re: a test pattern behaves like a camera (real time) instead of racing ahead.
            return ["-re", "-f", "lavfi", "-i", self.input]
        if kind == "v4l2":
            return [*self._v4l2_args(), "-i", self.input]
        if kind == "rtsp":
            return ["-rtsp_transport", "tcp", "-f", "rtsp", "-i", self.input]
        if kind == "network":
            return ["-i", self.input]
        if kind == "file":
            # A file stands in for a camera: real time and looped so it never ends.
            return ["-re", "-stream_loop", "-1", "-i", self.input]
        return ["-f", kind, "-i", self.input]

    def _v4l2_args(self) -> list[str]:
        pixel_format = self.pixel_format or ("H264" if self.is_h264 else None)
        return v4l2_input_options(pixel_format, self.resolution, self.fps)


def capture_source_for(camera: Camera) -> CaptureSource:
    """How FFmpeg reads a registry camera: its V4L2 node, configured input or stream URL."""
    if camera.kind is CameraKind.V4L2:
        return CaptureSource(
            camera_id=camera.id,
            input=camera.device_path or "",
            input_format="v4l2",
            exclusive=True,
            is_h264=camera.pixel_format == "H264",
            resolution=camera.resolution,
            fps=camera.fps,
            pixel_format=camera.pixel_format,
        )
    spec = camera.source
    if spec is None:
        raise ValueError(f"camera {camera.id} has no input")
    return CaptureSource(
        camera_id=camera.id,
        input=spec.input,
        input_format=spec.input_format,
        exclusive=spec.exclusive,
        is_h264=spec.pixel_format == "H264",
        resolution=camera.resolution,
        fps=camera.fps,
        pixel_format=spec.pixel_format,
    )
