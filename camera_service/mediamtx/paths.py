"""MediaMTX path provisioning: pure PathConf builders plus :class:`PathProvisioner`.

Ownership rule
--------------
camera-service owns exactly the MediaMTX configuration paths whose name starts with
:data:`OWNED_PREFIX` (``"camsvc_"``, configurable per provisioner). It creates paths only
under that prefix (:func:`path_name_for`), and :meth:`PathProvisioner.reconcile` deletes
only prefixed paths that are no longer wanted. Every other path (the operator's own
entries in ``mediamtx.yml``, ``all_others``, regular-expression paths, paths added by
hand through the API) is never replaced or deleted. MediaMTX keeps no free-form metadata
on a path, so the name is the only marker that survives a MediaMTX restart.

How a camera becomes a path
---------------------------
* Local device, ``lavfi`` generator or file: the path has ``source: publisher`` (the
  default) and ``runOnDemand`` runs FFmpeg, which reads the camera, encodes H.264 with
  libx264 ``ultrafast``/``zerolatency`` and publishes to
  ``rtsp://127.0.0.1:$RTSP_PORT/$MTX_PATH``. MediaMTX sets ``RTSP_PORT`` and ``MTX_PATH``
  in the command's environment and starts it when the first reader arrives, stops it
  ``runOnDemandCloseAfter`` after the last reader leaves, and restarts it if it exits
  (``runOnDemandRestart``). So the device is opened only while someone watches.
* ``rtsp://``, ``rtsps://``, ``http(s)://`` (HLS) URL: MediaMTX pulls it itself
  (``source: <url>``, ``sourceOnDemand: true``); no FFmpeg involved.

MediaMTX splits the command like a POSIX shell (go-shellquote) and then expands
``$VAR``/``${VAR}`` inside every argument, quotes or not, with no escape. Input arguments
containing ``$`` are therefore refused rather than silently mangled.
"""

from __future__ import annotations

import contextlib
import enum
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from camera_service.mediamtx.client import (
    MediaMTXClient,
    MediaMTXNotFound,
    MediaMTXRequestError,
)
from camera_service.mediamtx.models import DURATION_FIELDS, PathConf, RecordFormat, RTSPTransport

OWNED_PREFIX = "camsvc_"

#: Characters allowed in the names we create: a subset of what every MediaMTX release
#: accepts (older ones refuse ``.`` and ``~``), without ``/`` so names stay flat.
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")

#: URL schemes MediaMTX can pull by itself (``http(s)`` means an HLS source).
SOURCE_SCHEMES = frozenset({"rtsp", "rtsps", "http", "https"})

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

DEFAULT_CLOSE_AFTER = 10.0
DEFAULT_START_TIMEOUT = 10.0


# -- names -------------------------------------------------------------------------------


def path_name_for(camera_id: str, prefix: str = OWNED_PREFIX) -> str:
    """The MediaMTX path name for a camera id, e.g. ``camsvc_cam0``.

    Raises ValueError when the id has characters MediaMTX path names cannot carry.
    """
    if not _NAME_RE.match(camera_id):
        raise ValueError(
            f"camera id {camera_id!r} cannot be a MediaMTX path name "
            "(use letters, digits, '_' and '-')"
        )
    return prefix + camera_id


def camera_id_from_path(name: str, prefix: str = OWNED_PREFIX) -> str | None:
    """Inverse of :func:`path_name_for`; None for a path that is not ours."""
    if not is_owned(name, prefix):
        return None
    return name[len(prefix) :]


def is_owned(name: str, prefix: str = OWNED_PREFIX) -> bool:
    """True when camera-service owns the path ``name`` (see the module docstring)."""
    return name.startswith(prefix) and len(name) > len(prefix)


def stream_urls(
    name: str,
    host: str,
    *,
    rtsp_port: int = 8554,
    hls_port: int = 8888,
    webrtc_port: int = 8889,
) -> dict[str, str]:
    """Reader URLs of a path: RTSP, HLS playlist and the WebRTC (WHEP) page."""
    return {
        "rtsp": f"rtsp://{host}:{rtsp_port}/{name}",
        "hls": f"http://{host}:{hls_port}/{name}/index.m3u8",
        "webrtc": f"http://{host}:{webrtc_port}/{name}",
    }


# -- Go durations ----------------------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h|d)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}


def _trim(value: int, unit: int) -> str:
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    width = len(str(unit)) - 1
    return f"{whole}.{str(frac).rjust(width, '0').rstrip('0')}"


def format_go_duration(seconds: float) -> str:
    """Format like Go's ``time.Duration.String()`` (what MediaMTX echoes back).

    ``10 -> "10s"``, ``60 -> "1m0s"``, ``0.5 -> "500ms"``, ``3600 -> "1h0m0s"``.
    """
    if seconds < 0:
        raise ValueError("duration must not be negative")
    ns = round(seconds * 1_000_000_000)
    if ns == 0:
        return "0s"
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return _trim(ns, size) + unit
    hours, rest = divmod(ns, 3600 * 1_000_000_000)
    minutes, rest = divmod(rest, 60 * 1_000_000_000)
    secs = _trim(rest, 1_000_000_000) + "s"
    if hours:
        return f"{hours}h{minutes}m{secs}"
    if minutes:
        return f"{minutes}m{secs}"
    return secs


def parse_go_duration(text: str) -> float:
    """Parse a Go/MediaMTX duration (``"1m0s"``, ``"500ms"``, ``"1d"``) into seconds."""
    text = text.strip()
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if match is None:
            raise ValueError(f"invalid duration {text!r}")
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos == 0:
        raise ValueError(f"invalid duration {text!r}")
    return total


# -- PathConf builders -------------------------------------------------------------------


def is_source_url(value: str) -> bool:
    """True for URLs MediaMTX pulls itself (rtsp, rtsps, http, https)."""
    return urlsplit(value).scheme.lower() in SOURCE_SCHEMES and "://" in value


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


def publisher_command(
    input_args: Sequence[str],
    *,
    ffmpeg: str = "ffmpeg",
    encoder_args: Sequence[str] = DEFAULT_ENCODER_ARGS,
    rtsp_port: int | None = None,
) -> str:
    """The ``runOnDemand`` command line: FFmpeg reads the camera and publishes over RTSP.

    The target is ``rtsp://127.0.0.1:$RTSP_PORT/$MTX_PATH``, both filled in by MediaMTX
    (``rtsp_port`` pins the port instead).
    """
    for arg in (ffmpeg, *input_args, *encoder_args):
        if "$" in arg:
            raise ValueError(f"argument {arg!r} contains '$', which MediaMTX would expand")
    port = str(rtsp_port) if rtsp_port is not None else "$RTSP_PORT"
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
    target = f"rtsp://127.0.0.1:{port}/$MTX_PATH"
    return " ".join([*(shlex.quote(a) for a in argv), target])


def publisher_path_conf(
    input_args: Sequence[str],
    *,
    close_after: float = DEFAULT_CLOSE_AFTER,
    start_timeout: float = DEFAULT_START_TIMEOUT,
    ffmpeg: str = "ffmpeg",
    encoder_args: Sequence[str] = DEFAULT_ENCODER_ARGS,
    rtsp_port: int | None = None,
) -> PathConf:
    """PathConf for a local/lavfi/file camera published on demand by FFmpeg."""
    return PathConf(
        source="publisher",
        run_on_demand=publisher_command(
            input_args, ffmpeg=ffmpeg, encoder_args=encoder_args, rtsp_port=rtsp_port
        ),
        run_on_demand_restart=True,
        run_on_demand_start_timeout=format_go_duration(start_timeout),
        run_on_demand_close_after=format_go_duration(close_after),
    )


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
    published by FFmpeg (see :func:`ffmpeg_input_args`).
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


# -- provisioner -------------------------------------------------------------------------


class ProvisionAction(enum.StrEnum):
    ADDED = "added"
    REPLACED = "replaced"
    UNCHANGED = "unchanged"


@dataclass
class ReconcileReport:
    """What :meth:`PathProvisioner.reconcile` did (names sorted per list)."""

    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    #: Paths MediaMTX refused (400): name -> server error message.
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.replaced or self.removed)

    def record(self, name: str, action: ProvisionAction) -> None:
        {
            ProvisionAction.ADDED: self.added,
            ProvisionAction.REPLACED: self.replaced,
            ProvisionAction.UNCHANGED: self.unchanged,
        }[action].append(name)


class PathProvisioner:
    """Keeps MediaMTX path configuration in line with the cameras camera-service serves.

    All methods raise :class:`~camera_service.mediamtx.client.MediaMTXUnavailable` when
    MediaMTX cannot be reached; :meth:`ensure`/:meth:`reconcile` refuse names that do not
    carry the ownership prefix (ValueError), so the service can never overwrite an
    operator's path.
    """

    def __init__(self, client: MediaMTXClient, *, prefix: str = OWNED_PREFIX) -> None:
        if not prefix:
            raise ValueError("an empty prefix would claim every MediaMTX path")
        self._client = client
        self._prefix = prefix

    @property
    def prefix(self) -> str:
        return self._prefix

    def name_for(self, camera_id: str) -> str:
        return path_name_for(camera_id, self._prefix)

    def owns(self, name: str) -> bool:
        return is_owned(name, self._prefix)

    def _check_owned(self, name: str) -> None:
        if not self.owns(name):
            raise ValueError(
                f"path {name!r} does not start with {self._prefix!r}; "
                "camera-service only manages its own paths"
            )

    async def ensure(self, name: str, conf: PathConf) -> ProvisionAction:
        """Make path ``name`` match ``conf``: add it, replace it, or leave it (idempotent)."""
        self._check_owned(name)
        try:
            actual: PathConf | None = await self._client.get_config_path(name)
        except MediaMTXNotFound:
            actual = None
        return await self._apply(name, conf, actual)

    async def _apply(self, name: str, conf: PathConf, actual: PathConf | None) -> ProvisionAction:
        if actual is None:
            try:
                await self._client.add_config_path(name, conf)
                return ProvisionAction.ADDED
            except MediaMTXRequestError:
                # Added concurrently ("path already exists")? Then fall through to replace.
                with contextlib.suppress(MediaMTXNotFound):
                    actual = await self._client.get_config_path(name)
                if actual is None:
                    raise
        if conf_matches(conf, actual):
            return ProvisionAction.UNCHANGED
        try:
            await self._client.replace_config_path(name, conf)
        except MediaMTXNotFound:  # deleted concurrently
            await self._client.add_config_path(name, conf)
            return ProvisionAction.ADDED
        return ProvisionAction.REPLACED

    async def remove(self, name: str) -> bool:
        """Delete path ``name``; False when it did not exist."""
        self._check_owned(name)
        try:
            await self._client.delete_config_path(name)
        except MediaMTXNotFound:
            return False
        return True

    async def reconcile(self, desired: Mapping[str, PathConf]) -> ReconcileReport:
        """Make MediaMTX hold exactly the ``desired`` owned paths.

        Owned paths not in ``desired`` are deleted, missing ones added, different ones
        replaced; paths without the prefix are left alone. A path MediaMTX refuses (400)
        is reported in ``failed`` and does not stop the others.

        Note that a replace resets every field not in the desired conf, including the
        recording fields set by :meth:`set_recording`.
        """
        for name in desired:
            self._check_owned(name)
        current = {
            conf.name: conf for conf in await self._client.list_all_config_paths() if conf.name
        }
        report = ReconcileReport()
        for name in sorted(current):
            if self.owns(name) and name not in desired:
                await self._remove_stale(name, report)
        for name in sorted(desired):
            try:
                action = await self._apply(name, desired[name], current.get(name))
            except MediaMTXRequestError as exc:
                report.failed[name] = exc.message
            else:
                report.record(name, action)
        return report

    async def _remove_stale(self, name: str, report: ReconcileReport) -> None:
        try:
            await self._client.delete_config_path(name)
        except MediaMTXNotFound:
            return
        except MediaMTXRequestError as exc:
            report.failed[name] = exc.message
            return
        report.removed.append(name)

    async def set_recording(
        self,
        name: str,
        enabled: bool,
        record_path: str | None = None,
        record_format: RecordFormat = "fmp4",
    ) -> None:
        """Patch ``record``/``recordPath``/``recordFormat`` of path ``name``.

        Works on any existing path (it changes recording only); raises MediaMTXNotFound
        when the path does not exist.
        """
        await self._client.patch_config_path(
            name, recording_patch(enabled, record_path, record_format)
        )
