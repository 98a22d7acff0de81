"""Pure :class:`~camera_service.mediamtx.models.PathConf` builders and comparison.

How a camera becomes a path
---------------------------
* Local device, ``lavfi`` generator or file: the path has ``source: publisher`` (the
  default) and ``runOnDemand`` runs the FFmpeg publisher (:mod:`.publisher`). MediaMTX
  starts it when the first reader arrives, stops it ``runOnDemandCloseAfter`` after the
  last reader leaves, and restarts it if it exits (``runOnDemandRestart``). So the device is
  opened only while someone watches. ``always_on=True`` uses ``runOnInit`` instead.
* ``rtsp://``, ``rtsps://``, ``http(s)://`` (HLS) URL: MediaMTX pulls it itself
  (``source: <url>``, ``sourceOnDemand: true``, or ``false`` when always on); no FFmpeg.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from camera_service.mediamtx.durations import format_go_duration, parse_go_duration
from camera_service.mediamtx.models import DURATION_FIELDS, PathConf, RecordFormat, RTSPTransport
from camera_service.mediamtx.publisher import (
    DEFAULT_ENCODER_ARGS,
    ffmpeg_input_args,
    publisher_command,
)

#: URL schemes MediaMTX can pull by itself (``http(s)`` means an HLS source).
SOURCE_SCHEMES = frozenset({"rtsp", "rtsps", "http", "https"})

DEFAULT_CLOSE_AFTER = 10.0
DEFAULT_START_TIMEOUT = 10.0


def is_source_url(value: str) -> bool:
    """True for URLs MediaMTX pulls itself (rtsp, rtsps, http, https)."""
    return urlsplit(value).scheme.lower() in SOURCE_SCHEMES and "://" in value


def publisher_path_conf(
    input_args: Sequence[str],
    *,
    close_after: float = DEFAULT_CLOSE_AFTER,
    start_timeout: float = DEFAULT_START_TIMEOUT,
    ffmpeg: str = "ffmpeg",
    encoder_args: Sequence[str] = DEFAULT_ENCODER_ARGS,
    rtsp_port: int | None = None,
    always_on: bool = False,
) -> PathConf:
    """PathConf for a local/lavfi/file camera published by FFmpeg.

    On demand (``runOnDemand``) by default; ``always_on`` publishes from path creation on
    (``runOnInit``, restarted when it exits). The unused hook is sent empty so that switching
    between the two is a visible difference for :func:`conf_matches`.
    """
    command = publisher_command(
        input_args, ffmpeg=ffmpeg, encoder_args=encoder_args, rtsp_port=rtsp_port
    )
    if always_on:
        return PathConf(
            source="publisher", run_on_init=command, run_on_init_restart=True, run_on_demand=""
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
    """PathConf for a stream MediaMTX pulls itself (RTSP/RTSPS/HLS URL)."""
    if not is_source_url(url):
        raise ValueError(f"{url!r} is not an rtsp/rtsps/http/https URL")
    scheme = urlsplit(url).scheme.lower()
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
    comparison is a subset check; durations compare by value (``60s`` == ``1m0s``).
    """
    have = actual.model_dump(mode="json", by_alias=True)
    missing = object()
    return all(
        _same_value(key, want, have.get(key, missing)) for key, want in desired.to_body().items()
    )
