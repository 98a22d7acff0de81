"""Every URL a reader of a camera's MediaMTX path uses, in one place.

* :func:`stream_urls`: what clients get (``streams`` of the API): RTSP, the HLS playlist,
  MediaMTX's WebRTC viewer page (``webrtc``, ``http://host:8889/<path>``: an HTML page, not
  an API) and its WHEP endpoint (``whep``, ``…/<path>/whep``: POST an SDP offer, get the
  answer; what a player uses). The HLS URL is the playlist itself, so players are not sent
  through MediaMTX's redirect from ``/<path>`` to its HLS page.
* :func:`local_rtsp_url`: what the daemon's own FFmpeg readers (recordings, snapshots)
  open on the loopback interface.

With stream access control on (``mediamtx.stream_auth``) every URL carries a stream token
scoped to the path as ``?token=``: MediaMTX passes the query to ``POST /mediamtx/auth`` for
every protocol (RTSP also as ``token``), and WHEP/HLS follow-up requests keep it.
"""

from __future__ import annotations


def stream_urls(
    name: str,
    host: str,
    *,
    rtsp_port: int = 8554,
    hls_port: int = 8888,
    webrtc_port: int = 8889,
    token: str | None = None,
) -> dict[str, str]:
    """Reader URLs of a path: RTSP, HLS playlist, WebRTC page and WHEP endpoint
    (``token`` appended to each)."""
    query = _query(token)
    return {
        "rtsp": f"rtsp://{host}:{rtsp_port}/{name}{query}",
        "hls": f"http://{host}:{hls_port}/{name}/index.m3u8{query}",
        "webrtc": f"http://{host}:{webrtc_port}/{name}{query}",
        "whep": f"http://{host}:{webrtc_port}/{name}/whep{query}",
    }


def local_rtsp_url(name: str, host: str, rtsp_port: int, token: str | None = None) -> str:
    """The RTSP URL the daemon's own readers (FFmpeg recordings, snapshots) open."""
    return f"rtsp://{host}:{rtsp_port}/{name}{_query(token)}"


def _query(token: str | None) -> str:
    """``?token=<token>``; stream tokens are URL-safe, so no quoting is needed."""
    return f"?token={token}" if token else ""
