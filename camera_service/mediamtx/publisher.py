"""The FFmpeg command MediaMTX runs to publish a camera (``runOnDemand``), in one place.

MediaMTX splits the command like a POSIX shell (go-shellquote) and then expands
``$VAR``/``${VAR}`` inside every argument, quotes or not, with no escape. Input arguments
containing ``$`` are therefore refused rather than silently mangled.

The publisher reads the camera, encodes H.264 with libx264 ``ultrafast``/``zerolatency``
and publishes to :func:`publish_url` (``rtsp://127.0.0.1:$RTSP_PORT/$MTX_PATH``; MediaMTX
sets both variables in the command's environment).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from camera_service.auth.daemon_credentials import Credential

#: H.264 encoding for published cameras. A key frame every 2 s whatever the frame rate,
#: so a reader joining a running stream waits at most 2 s for a decodable picture;
#: yuv420p because V4L2 cameras often deliver 4:2:2, which most players cannot decode.
DEFAULT_ENCODER_ARGS: tuple[str, ...] = (
    "-an",
    "-c:v",
    "libx264",
    "-preset",
    "ultrafast",
    "-tune",
    "zerolatency",
    "-pix_fmt",
    "yuv420p",
    "-force_key_frames",
    "expr:gte(t,n_forced*2)",
)


def ffmpeg_input_args(source: str, input_format: str | None = None) -> list[str]:
    """FFmpeg input arguments for a configured camera source.

    ``lavfi`` generators and files are read at native rate (``-re``; files loop), so the
    publisher does not flood MediaMTX; ``/dev/video*`` devices use V4L2.
    """
    if input_format == "lavfi":
        return ["-re", "-f", "lavfi", "-i", source]
    if input_format == "v4l2" or (input_format is None and source.startswith("/dev/video")):
        return ["-f", "v4l2", "-i", source]
    fmt = ["-f", input_format] if input_format else []
    return ["-re", "-stream_loop", "-1", *fmt, "-i", source]


def publish_url(rtsp_port: int | None = None, credential: Credential | None = None) -> str:
    """Where the publisher sends the stream; ``$RTSP_PORT``/``$MTX_PATH`` are MediaMTX's.

    ``credential`` (the daemon's publisher credential, hex password) goes into the
    user-info, which FFmpeg sends as RTSP Basic auth after MediaMTX's 401 challenge.
    """
    port = str(rtsp_port) if rtsp_port is not None else "$RTSP_PORT"
    userinfo = f"{credential.user}:{credential.password}@" if credential is not None else ""
    return f"rtsp://{userinfo}127.0.0.1:{port}/$MTX_PATH"


def publisher_command(
    input_args: Sequence[str],
    *,
    ffmpeg: str = "ffmpeg",
    encoder_args: Sequence[str] = DEFAULT_ENCODER_ARGS,
    rtsp_port: int | None = None,
    credential: Credential | None = None,
) -> str:
    """The ``runOnDemand`` command line: FFmpeg reads the camera and publishes over RTSP.

    The target is :func:`publish_url` (``rtsp_port`` pins the port instead of MediaMTX's
    ``$RTSP_PORT``).
    """
    for arg in (ffmpeg, *input_args, *encoder_args):
        if "$" in arg:
            raise ValueError(f"argument {arg!r} contains '$', which MediaMTX would expand")
    argv = [
        ffmpeg,
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "warning",
        *input_args,
        *encoder_args,
        "-f",
        "rtsp",
        "-rtsp_transport",
        "tcp",
    ]
    return " ".join([*(shlex.quote(a) for a in argv), publish_url(rtsp_port, credential)])
