"""Every URL a reader of a camera's MediaMTX path uses, in one place.

* :func:`stream_urls`: what clients get (``streams`` of the API): RTSP, the HLS playlist,
  MediaMTX's WebRTC viewer page (``webrtc``).
* :func:`local_rtsp_url`: what the daemon's own FFmpeg readers (recordings, snapshots)
  open on the loopback interface.
"""

from __future__ import annotations


def stream_urls(
    name: str,
    host: str,
    *,
    rtsp_port: int = 8554,
    hls_port: int = 8888,
    webrtc_port: int = 8889,
) -> dict[str, str]:
    """Reader URLs of a path: RTSP, HLS playlist and the WebRTC page."""
    return {
        "rtsp": f"rtsp://{host}:{rtsp_port}/{name}",
        "hls": f"http://{host}:{hls_port}/{name}/index.m3u8",
        "webrtc": f"http://{host}:{webrtc_port}/{name}",
    }


def local_rtsp_url(name: str, host: str, rtsp_port: int) -> str:
    """The RTSP URL the daemon's own readers (FFmpeg recordings, snapshots) open."""
    return f"rtsp://{host}:{rtsp_port}/{name}"
