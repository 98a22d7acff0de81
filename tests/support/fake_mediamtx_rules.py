"""What a real MediaMTX (v1.20.1) does with path configuration, for the fake to mirror.

Each rule names the MediaMTX source file it follows (paths inside the MediaMTX repository,
tag v1.20.1). The fake applies them so the fake-based suite fails where the real server
would.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from camera_service.mediamtx.durations import format_go_duration, parse_go_duration

Json = dict[str, Any]

#: PathConf fields holding durations (internal/conf/path.go: conf.Duration fields).
DURATION_FIELDS = frozenset(
    {
        "sourceOnDemandStartTimeout",
        "sourceOnDemandCloseAfter",
        "runOnDemandStartTimeout",
        "runOnDemandCloseAfter",
        "recordPartDuration",
        "recordSegmentDuration",
        "recordDeleteAfter",
    }
)

#: Fields a running path takes without being closed
#: (internal/core/path_manager.go, pathConfCanBeUpdated; RPI camera fields left out).
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

# internal/conf/path.go: rePathName
_PATH_NAME_RE = re.compile(r"^[0-9a-zA-Z_\-/\.~]+$")

# internal/conf/path.go, validate(): source prefixes, matched case-sensitively.
_URL_PREFIXES = (
    "rtsp://", "rtsps://", "rtsp+http://", "rtsps+http://", "rtsp+ws://", "rtsps+ws://",
    "rtmp://", "rtmps://", "http://", "https://", "udp://", "udp+mpegts://", "udp+rtp://",
    "srt://", "moqt://", "whep://", "wheps://",
)  # fmt: skip

DAY_S = 86400.0


def echo_duration(value: str) -> str:
    """A duration as MediaMTX echoes it (internal/conf/duration.go, marshalInternal):
    whole days as ``Nd``, the rest as Go's ``time.Duration.String()``, zero as ``""``."""
    seconds = parse_go_duration(value)
    days, rest = divmod(seconds, DAY_S)
    text = f"{int(days)}d" if days else ""
    if rest:
        text += format_go_duration(rest)
    return text


def echo_conf(conf: Json) -> Json:
    """``conf`` with every duration in MediaMTX's echo format."""
    out = dict(conf)
    for key in DURATION_FIELDS:
        value = out.get(key)
        if isinstance(value, str):
            out[key] = echo_duration(value)
    return out


def path_name_error(name: str) -> str | None:
    """internal/conf/path.go, IsValidPathName (regular-expression names ``~…`` aside)."""
    if name.startswith("~"):
        return None
    if not name:
        return "cannot be empty"
    if name[0] == "/" or name[-1] == "/":
        return "can't begin or end with a slash"
    if not _PATH_NAME_RE.match(name):
        return "can contain only alphanumeric characters, underscore, dot, minus, slash"
    if any(segment in (".", "..") for segment in name.split("/")):
        return "can't contain dot path segments"
    return None


def _url_error(source: str) -> str | None:
    """internal/conf/path.go, validateURL."""
    try:
        parts = urlsplit(source)
    except ValueError:
        return f"'{source}' is not a valid URL"
    if not parts.scheme or not parts.netloc:
        return f"'{source}' is not a valid URL"
    if bool(parts.username) != bool(parts.password):
        return "username and password must be both provided"
    return None


def _source_error(conf: Json) -> str | None:
    """internal/conf/path.go, validate(): the source switch and the on-demand rules."""
    source = conf.get("source") or "publisher"
    if source in ("publisher", "redirect", "rpiCamera"):
        pass
    elif source.startswith(_URL_PREFIXES):
        problem = _url_error(source)
        if problem is not None:
            return problem
    else:
        return f"invalid source: '{source}'"
    if conf.get("sourceOnDemand") and source == "publisher":
        return "'sourceOnDemand' is useless when source is 'publisher'"
    if conf.get("runOnDemand") and source != "publisher":
        return "'runOnDemand' can be used only when source is 'publisher'"
    return None


def _record_error(conf: Json, *, playback: bool) -> str | None:
    """internal/conf/path.go, validate(): the ``// Record`` block."""
    path = conf.get("recordPath") or ""
    if "%path" not in path:
        return "'recordPath' must contain %path"
    if "%s" not in path and not all(v in path for v in ("%Y", "%m", "%d", "%H", "%M", "%S")):
        return "'recordPath' must contain either %s or %Y %m %d %H %M %S"
    if playback and "%f" not in path:
        return "'recordPath' must contain %f"
    segment = parse_go_duration(conf.get("recordSegmentDuration") or "0s")
    delete_after = parse_go_duration(conf.get("recordDeleteAfter") or "0s")
    if segment > DAY_S:
        return "maximum segment duration is 1 day"
    if delete_after != 0 and delete_after < segment:
        return "'recordDeleteAfter' cannot be lower than 'recordSegmentDuration'"
    return None


def conf_error(conf: Json, *, playback: bool = False) -> str | None:
    """Why MediaMTX refuses ``conf`` (400), or None. ``playback`` is the global setting."""
    try:
        return _source_error(conf) or _record_error(conf, playback=playback)
    except ValueError as exc:  # a duration MediaMTX cannot parse
        return str(exc)


def restarts(old: Json, new: Json) -> bool:
    """True when going from ``old`` to ``new`` closes the path and its readers."""
    keys = (old.keys() | new.keys()) - RELOADABLE_FIELDS
    return any(echo_conf(old).get(k) != echo_conf(new).get(k) for k in keys)
