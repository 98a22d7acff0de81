"""MediaMTX path provisioning: pure PathConf builders plus :class:`PathProvisioner`.

Names and ownership
-------------------
A camera's MediaMTX path is named by its camera id (``rtsp://<host>:8554/camera0``), so the
name cannot mark the path as ours. Ownership is recorded instead: :class:`PathOwnership`
keeps the names of the paths camera-service created, persisted as JSON in the state
directory (``mediamtx_paths.json``, written atomically). MediaMTX keeps no free-form metadata
on a path, and API-made paths vanish when it restarts, so the record lives with us.

* A name is claimed *before* the path is added, so the record is a superset of what exists:
  a crash between the two leaves a claim without a path, which the next reconcile drops.
* :meth:`PathProvisioner.ensure` never replaces a path it does not own (an operator's entry
  in ``mediamtx.yml`` or one added by hand through the API): it raises :class:`PathConflict`.
* :meth:`PathProvisioner.reconcile` deletes only owned paths that are no longer wanted.
  Regular-expression paths, ``all``/``all_others`` and every unowned path are left alone.

How a camera becomes a path
---------------------------
* Local device, ``lavfi`` generator or file: the path has ``source: publisher`` (the
  default) and ``runOnDemand`` runs FFmpeg, which reads the camera, encodes H.264 with
  libx264 ``ultrafast``/``zerolatency`` and publishes to
  ``rtsp://127.0.0.1:$RTSP_PORT/$MTX_PATH``. MediaMTX sets ``RTSP_PORT`` and ``MTX_PATH``
  in the command's environment and starts it when the first reader arrives, stops it
  ``runOnDemandCloseAfter`` after the last reader leaves, and restarts it if it exits
  (``runOnDemandRestart``). So the device is opened only while someone watches.
  ``always_on=True`` uses ``runOnInit`` instead (published until switched back).
* ``rtsp://``, ``rtsps://``, ``http(s)://`` (HLS) URL: MediaMTX pulls it itself
  (``source: <url>``, ``sourceOnDemand: true``, or ``false`` when always on); no FFmpeg.

MediaMTX splits the command like a POSIX shell (go-shellquote) and then expands
``$VAR``/``${VAR}`` inside every argument, quotes or not, with no escape. Input arguments
containing ``$`` are therefore refused rather than silently mangled.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from camera_service.fsutil import atomic_write, load_recoverable
from camera_service.mediamtx.client import (
    MediaMTXClient,
    MediaMTXNotFound,
    MediaMTXRequestError,
)
from camera_service.mediamtx.models import DURATION_FIELDS, PathConf, RecordFormat, RTSPTransport

log = logging.getLogger(__name__)

OWNERSHIP_FILE = "mediamtx_paths.json"
_OWNERSHIP_VERSION = 1

#: Names MediaMTX gives a special meaning (catch-all entries), never used for a camera.
RESERVED_NAMES = frozenset({"all", "all_others"})

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


def path_name_for(camera_id: str) -> str:
    """The MediaMTX path name of a camera: the camera id itself.

    Raises ValueError when the id has characters MediaMTX path names cannot carry, or is a
    name MediaMTX reserves (``all``, ``all_others``).
    """
    if not _NAME_RE.match(camera_id):
        raise ValueError(
            f"camera id {camera_id!r} cannot be a MediaMTX path name "
            "(use letters, digits, '_' and '-')"
        )
    if camera_id in RESERVED_NAMES:
        raise ValueError(f"camera id {camera_id!r} is a reserved MediaMTX path name")
    return camera_id


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
    #: Paths MediaMTX refused (400) or that we do not own: name -> reason.
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


class PathConflict(Exception):
    """A path of that name exists in MediaMTX and camera-service did not create it."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"MediaMTX path {name!r} exists and was not created by camera-service; "
            "it is left untouched"
        )
        self.name = name


def _parse_ownership(data: object) -> set[str]:
    paths = data.get("paths") if isinstance(data, dict) else None
    if not isinstance(paths, list):
        raise ValueError("no 'paths' list")
    return {name for name in paths if isinstance(name, str) and _NAME_RE.match(name)}


class PathOwnership:
    """The names of the MediaMTX paths camera-service created.

    In memory only without ``file``; with it, loaded at construction and rewritten
    atomically (JSON ``{"version": 1, "paths": [...]}``, mode 0600) on every change. An
    unusable file is moved aside (``.corrupt-<time>``) and the record starts empty: paths of a
    lost record are then treated as foreign, never deleted.
    """

    def __init__(self, file: Path | None = None) -> None:
        self.file = file
        self._names: set[str] = self._load(file) if file is not None else set()
        self._lock = asyncio.Lock()

    @staticmethod
    def _load(file: Path) -> set[str]:
        return load_recoverable(file, _parse_ownership, set)

    def owns(self, name: str) -> bool:
        return name in self._names

    def names(self) -> frozenset[str]:
        return frozenset(self._names)

    async def claim(self, name: str) -> None:
        await self._update(self._names | {name})

    async def release(self, *names: str) -> None:
        await self._update(self._names - set(names))

    async def _update(self, names: set[str]) -> None:
        if names == self._names:
            return
        self._names = names
        if self.file is None:
            return
        async with self._lock:  # one writer at a time, always the latest state
            text = json.dumps({"version": _OWNERSHIP_VERSION, "paths": sorted(self._names)})
            await asyncio.to_thread(atomic_write, self.file, text + "\n")


def _check_name(name: str) -> None:
    if not _NAME_RE.match(name) or name in RESERVED_NAMES:
        raise ValueError(f"{name!r} is not a path name camera-service manages")


class PathProvisioner:
    """Keeps MediaMTX path configuration in line with the cameras camera-service serves.

    All methods raise :class:`~camera_service.mediamtx.client.MediaMTXUnavailable` when
    MediaMTX cannot be reached. Only paths recorded in ``ownership`` are ever replaced or
    deleted (see the module docstring); without one, an in-memory record is used.
    """

    def __init__(self, client: MediaMTXClient, *, ownership: PathOwnership | None = None) -> None:
        self._client = client
        self.ownership = ownership if ownership is not None else PathOwnership()

    def name_for(self, camera_id: str) -> str:
        return path_name_for(camera_id)

    def owns(self, name: str) -> bool:
        return self.ownership.owns(name)

    async def ensure(self, name: str, conf: PathConf) -> ProvisionAction:
        """Make path ``name`` match ``conf``: add it, replace it, or leave it (idempotent).

        Raises :class:`PathConflict` when the path exists and is not ours.
        """
        _check_name(name)
        try:
            actual: PathConf | None = await self._client.get_config_path(name)
        except MediaMTXNotFound:
            actual = None
        if actual is not None and not self.owns(name):
            raise PathConflict(name)
        return await self._apply(name, conf, actual)

    async def _apply(self, name: str, conf: PathConf, actual: PathConf | None) -> ProvisionAction:
        if actual is None:
            owned_before = self.owns(name)
            await self.ownership.claim(name)  # before the add: the record stays a superset
            try:
                await self._client.add_config_path(name, conf)
                return ProvisionAction.ADDED
            except MediaMTXRequestError:
                # Added concurrently ("path already exists")? Ours: replace; else: conflict.
                with contextlib.suppress(MediaMTXNotFound):
                    actual = await self._client.get_config_path(name)
                if actual is None or not owned_before:
                    await self.ownership.release(name)
                if actual is None:
                    raise
                if not owned_before:
                    raise PathConflict(name) from None
        if conf_matches(conf, actual):
            return ProvisionAction.UNCHANGED
        try:
            await self._client.replace_config_path(name, conf)
        except MediaMTXNotFound:  # deleted concurrently
            await self._client.add_config_path(name, conf)
            return ProvisionAction.ADDED
        return ProvisionAction.REPLACED

    async def remove(self, name: str) -> bool:
        """Delete our path ``name``; False when it did not exist.

        Raises ValueError for an existing path camera-service does not own.
        """
        if not self.owns(name):
            try:
                await self._client.get_config_path(name)
            except MediaMTXNotFound:
                return False
            raise ValueError(f"path {name!r} was not created by camera-service")
        try:
            await self._client.delete_config_path(name)
        except MediaMTXNotFound:
            await self.ownership.release(name)
            return False
        await self.ownership.release(name)
        return True

    async def reconcile(self, desired: Mapping[str, PathConf]) -> ReconcileReport:
        """Make MediaMTX hold exactly the ``desired`` paths among those we own.

        Owned paths not in ``desired`` are deleted, missing ones added, different ones
        replaced. A desired name held by a path we do not own, or a path MediaMTX refuses
        (400), is reported in ``failed`` and does not stop the others. Claims on paths that
        no longer exist are dropped.

        Note that a replace resets every field not in the desired conf, including the
        recording fields set by :meth:`set_recording`.
        """
        for name in desired:
            _check_name(name)
        current = {
            conf.name: conf for conf in await self._client.list_all_config_paths() if conf.name
        }
        report = ReconcileReport()
        for name in sorted(self.ownership.names() - set(desired)):
            await self._remove_stale(name, name in current, report)
        for name in sorted(desired):
            await self._reconcile_one(name, desired[name], current.get(name), report)
        return report

    async def _reconcile_one(
        self, name: str, conf: PathConf, actual: PathConf | None, report: ReconcileReport
    ) -> None:
        if actual is not None and not self.owns(name):
            report.failed[name] = str(PathConflict(name))
            return
        try:
            action = await self._apply(name, conf, actual)
        except MediaMTXRequestError as exc:
            report.failed[name] = exc.message
        except PathConflict as exc:
            report.failed[name] = str(exc)
        else:
            report.record(name, action)

    async def _remove_stale(self, name: str, exists: bool, report: ReconcileReport) -> None:
        if not exists:
            await self.ownership.release(name)
            return
        try:
            await self._client.delete_config_path(name)
        except MediaMTXNotFound:
            pass
        except MediaMTXRequestError as exc:
            report.failed[name] = exc.message
            return
        else:
            report.removed.append(name)
        await self.ownership.release(name)

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
