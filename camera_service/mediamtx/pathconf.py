"""Pure :class:`~camera_service.mediamtx.models.PathConf` builders and comparison.

How a camera becomes a path
---------------------------
* Local device, ``lavfi`` generator, file, or an ``http(s)`` URL that is not an HLS playlist
  (an MJPEG camera, say): the path has ``source: publisher`` (the default) and
  ``runOnDemand`` runs the FFmpeg publisher (:mod:`.publisher`). MediaMTX starts it when the
  first reader arrives, stops it ``runOnDemandCloseAfter`` after the last reader leaves,
  and restarts it if it exits (``runOnDemandRestart``). So the device is opened only while
  someone watches.
* ``rtsp://``, ``rtsps://`` URL or an HLS playlist (``http(s)://…/*.m3u8``): MediaMTX pulls
  it itself (``source: <url>``, ``sourceOnDemand: true``); no FFmpeg. MediaMTX treats every
  ``http(s)`` source as HLS (``internal/conf/path.go``), so other HTTP streams must not get
  here.

A path's configuration never depends on whether it is streamed or recorded: MediaMTX closes
a path and every reader on any change except the ``record*`` fields
(``internal/core/path_manager.go``, ``pathConfCanBeUpdated``). "Always on" is therefore a
reader the daemon holds (:mod:`.holder`), and recording is a ``record`` flag that MediaMTX
applies in place.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from camera_service.auth.daemon_credentials import Credential
from camera_service.mediamtx.durations import format_go_duration, parse_go_duration
from camera_service.mediamtx.models import DURATION_FIELDS, PathConf, RecordFormat, RTSPTransport
from camera_service.mediamtx.publisher import (
    DEFAULT_ENCODER_ARGS,
    ffmpeg_input_args,
    publisher_command,
)

#: URL schemes MediaMTX can pull by itself (``http(s)`` only for HLS playlists).
SOURCE_SCHEMES = frozenset({"rtsp", "rtsps", "http", "https"})
_HLS_SCHEMES = frozenset({"http", "https"})

#: PathConf fields MediaMTX applies to a running path without closing it
#: (``internal/core/path_manager.go``, ``pathConfCanBeUpdated``; RPI camera fields aside).
RELOADABLE_FIELDS = frozenset(
    {
        "name",
        "record",
        "recordPath",
        "recordFormat",
        "recordPartDuration",
        "recordMaxPartSize",
        "recordSegmentDuration",
        "recordDeleteAfter",
    }
)

DEFAULT_CLOSE_AFTER = 10.0
DEFAULT_START_TIMEOUT = 10.0


def is_source_url(value: str) -> bool:
    """True for URLs MediaMTX pulls itself: rtsp, rtsps, and http(s) HLS playlists."""
    if "://" not in value:
        return False
    parts = urlsplit(value)
    scheme = parts.scheme.lower()
    if scheme in _HLS_SCHEMES:
        return parts.path.lower().endswith(".m3u8")
    return scheme in SOURCE_SCHEMES


def source_url_problem(url: str) -> str | None:
    """Why MediaMTX would refuse ``url`` as a source, or None (``internal/conf/path.go``,
    ``validateURL``: a host is required; user and password come together or not at all)."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a bad port
    except ValueError as exc:
        return f"{url!r} is not a valid URL ({exc})"
    del port
    if not parts.scheme or not parts.hostname:
        return f"{url!r} is not a valid URL (scheme and host are required)"
    if (parts.username or "") and not parts.password:
        return "a source URL with a user needs a password too (MediaMTX refuses it)"
    if parts.password and not parts.username:
        return "a source URL with a password needs a user too (MediaMTX refuses it)"
    return None


def normalise_source_url(url: str) -> str:
    """``url`` with a lower-case scheme: MediaMTX matches schemes case-sensitively.

    Raises ValueError with the reason MediaMTX would refuse it.
    """
    problem = source_url_problem(url)
    if problem is not None:
        raise ValueError(problem)
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme=parts.scheme.lower()))


def publisher_path_conf(
    input_args: Sequence[str],
    *,
    close_after: float = DEFAULT_CLOSE_AFTER,
    start_timeout: float = DEFAULT_START_TIMEOUT,
    ffmpeg: str = "ffmpeg",
    encoder_args: Sequence[str] = DEFAULT_ENCODER_ARGS,
    rtsp_port: int | None = None,
    credential: Credential | None = None,
) -> PathConf:
    """PathConf for a local/lavfi/file camera published by FFmpeg on demand.

    ``runOnInit`` is sent empty, so a path left with an always-on hook by an older release
    is a visible difference for :func:`conf_matches`.
    """
    command = publisher_command(
        input_args,
        ffmpeg=ffmpeg,
        encoder_args=encoder_args,
        rtsp_port=rtsp_port,
        credential=credential,
    )
    return PathConf(
        source="publisher",
        run_on_demand=command,
        run_on_demand_restart=True,
        run_on_demand_start_timeout=format_go_duration(start_timeout),
        run_on_demand_close_after=format_go_duration(close_after),
        run_on_init="",
    )


def idle_publisher_conf() -> PathConf:
    """A publisher path with no command: it exists (URLs stay valid) but nothing opens the
    camera, e.g. while FFmpeg records a single-reader device directly."""
    return PathConf(source="publisher", run_on_demand="", run_on_init="")


def source_path_conf(
    url: str,
    *,
    on_demand: bool = True,
    close_after: float = DEFAULT_CLOSE_AFTER,
    start_timeout: float = DEFAULT_START_TIMEOUT,
    rtsp_transport: RTSPTransport | None = None,
) -> PathConf:
    """PathConf for a stream MediaMTX pulls itself (RTSP/RTSPS URL or HLS playlist).

    Raises ValueError for other URLs and for URLs MediaMTX would refuse.
    """
    if not is_source_url(url):
        raise ValueError(f"{url!r} is not an rtsp/rtsps URL or an http(s) HLS playlist")
    url = normalise_source_url(url)
    scheme = urlsplit(url).scheme
    conf = PathConf(source=url, source_on_demand=on_demand)
    if on_demand:
        conf.source_on_demand_start_timeout = format_go_duration(start_timeout)
        conf.source_on_demand_close_after = format_go_duration(close_after)
    if rtsp_transport is not None and scheme in {"rtsp", "rtsps"}:
        conf.rtsp_transport = rtsp_transport
    return conf


def camera_path_conf(
    source: str,
    input_format: str | None = None,
    *,
    close_after: float = DEFAULT_CLOSE_AFTER,
    start_timeout: float = DEFAULT_START_TIMEOUT,
    ffmpeg: str = "ffmpeg",
    encoder_args: Sequence[str] = DEFAULT_ENCODER_ARGS,
) -> PathConf:
    """PathConf for a configured camera source (``cameras.sources[].input/input_format``).

    A URL without an explicit ``input_format`` is pulled by MediaMTX; anything else is
    published by FFmpeg (see :func:`~.publisher.ffmpeg_input_args`).
    """
    if input_format is None and is_source_url(source):
        return source_path_conf(source, close_after=close_after, start_timeout=start_timeout)
    return publisher_path_conf(
        ffmpeg_input_args(source, input_format),
        close_after=close_after,
        start_timeout=start_timeout,
        ffmpeg=ffmpeg,
        encoder_args=encoder_args,
    )


def recording_patch(
    enabled: bool, record_path: str | None = None, record_format: RecordFormat = "fmp4"
) -> PathConf:
    """The PathConf patch that turns MediaMTX recording of a path on or off.

    ``record_path`` uses MediaMTX variables (``%path``, ``%Y`` ... ``%f``); the extension
    is added by MediaMTX. When disabling, only ``record: false`` (and a given path) is sent.
    """
    conf = PathConf(record=enabled, record_path=record_path)
    if enabled:
        conf.record_format = record_format
    return conf


def recording_fields(
    conf: PathConf,
    record_path: str,
    *,
    enabled: bool,
    segment_duration: float = 86400.0,
    record_format: RecordFormat = "fmp4",
) -> PathConf:
    """``conf`` with every recording field set (a copy).

    ``recordDeleteAfter`` is ``0s``: retention of files is camera-service's job, and the
    MediaMTX default (1 day) would delete our recordings behind our back. The fields are set
    even while not recording, so a path never points MediaMTX's cleaner anywhere else.
    """
    return conf.model_copy(
        update={
            "record": enabled,
            "record_path": record_path,
            "record_format": record_format,
            "record_segment_duration": format_go_duration(segment_duration),
            "record_delete_after": "0s",
        }
    )


def restarts_path(before: PathConf, after: PathConf) -> bool:
    """True when MediaMTX closes the path (and its readers) to go from ``before`` to
    ``after``: any difference outside :data:`RELOADABLE_FIELDS`."""
    old = {k: v for k, v in before.to_body().items() if k not in RELOADABLE_FIELDS}
    new = {k: v for k, v in after.to_body().items() if k not in RELOADABLE_FIELDS}
    return not conf_matches(PathConf.model_validate(new), PathConf.model_validate(old))


def _same_value(key: str, want: Any, have: Any) -> bool:
    if key in DURATION_FIELDS and isinstance(want, str) and isinstance(have, str):
        try:
            return parse_go_duration(want) == parse_go_duration(have)
        except ValueError:
            return want == have
    return bool(want == have)


def conf_matches(desired: PathConf, actual: PathConf) -> bool:
    """True when every field set in ``desired`` has the same value in ``actual``.

    ``actual`` comes from MediaMTX with every field filled in (defaults included), so the
    comparison is a subset check; durations compare by value (``60s`` == ``1m0s``, and
    MediaMTX's echoes ``""`` == ``0s``, ``1d`` == ``24h``).
    """
    have = actual.model_dump(mode="json", by_alias=True)
    missing = object()
    return all(
        _same_value(key, want, have.get(key, missing)) for key, want in desired.to_body().items()
    )
