"""External streams (add_external_stream / remove_external_stream / get_external_streams).

Persisted as a JSON list in ``<state_dir>/external_streams.json``, written atomically
(temporary file, fsync, rename, directory fsync) with mode 0600 because stream URLs may carry
credentials. Writes run in a thread; the in-memory list is the source of truth for reads.
Each stream becomes a registry camera of kind ``external`` whose id is its ``stream_name``.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
import os
import re
import time
from collections.abc import Callable, Container
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from camera_service.cameras.model import is_valid_camera_id
from camera_service.fsutil import atomic_write, load_recoverable

log = logging.getLogger(__name__)

FILE_NAME = "external_streams.json"
ALLOWED_SCHEMES = frozenset({"rtsp", "rtsps", "http", "https"})
MAX_URL_LENGTH = 2048
STREAM_TYPE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
_DEFAULT_TYPES = {"rtsp": "rtsp", "rtsps": "rtsp", "http": "http", "https": "http"}
MASK = "***"
# `name=value` after `?`, `&`, `;` (matrix parameters, e.g. `/stream;password=x`) or `#`.
_URL_PARAM = re.compile(r"(?P<lead>[?&;#])(?P<name>[^=&;#?/]+)=(?P<value>[^&;#]*)")
# Parameter names that carry secrets, matched on the lowercased, percent-decoded name:
# password, passwd, pwd, pass, pw, secret, token, access_token, auth, authorization,
# api_key, apikey, key, sig, signature, credential(s), session ...
_SECRET_NAME = re.compile(r"pass|pwd|^pw$|secret|token|auth|key|sig|cred|session|sid$")


class ExternalStreamError(ValueError):
    """Invalid parameters; ``param``/``rule``/``hint`` map onto -32602 ``error.data``."""

    def __init__(self, param: str, rule: str, hint: str) -> None:
        super().__init__(f"{param}: {hint}")
        self.param = param
        self.rule = rule
        self.hint = hint


class ExternalStreamNotFound(KeyError):
    """remove() of a URL that is not registered (maps onto -32010)."""


@dataclass(frozen=True, slots=True)
class ExternalStream:
    stream_url: str
    stream_name: str
    stream_type: str
    added_at: float

    def public_dict(self) -> dict[str, Any]:
        return asdict(self)


def validate_stream_url(url: object) -> str:
    """Accept rtsp/rtsps/http/https URLs with a host; raise :class:`ExternalStreamError`."""
    if not isinstance(url, str) or not url:
        raise ExternalStreamError("stream_url", "type", "a non-empty string is required")
    if len(url) > MAX_URL_LENGTH:
        raise ExternalStreamError(
            "stream_url", "max_length", f"at most {MAX_URL_LENGTH} characters"
        )
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        raise ExternalStreamError(
            "stream_url", "format", "no whitespace or control characters allowed"
        )
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError as exc:
        raise ExternalStreamError("stream_url", "format", f"malformed URL ({exc})") from exc
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise ExternalStreamError(
            "stream_url", "scheme", "scheme must be one of rtsp, rtsps, http, https"
        )
    if not parts.hostname:
        raise ExternalStreamError("stream_url", "host", "the URL must name a host")
    if bool(parts.username) != bool(parts.password):
        # MediaMTX refuses such a source (internal/conf/path.go, validateURL).
        raise ExternalStreamError(
            "stream_url", "credentials", "give both a user and a password in the URL, or neither"
        )
    return url


def validate_stream_name(name: object) -> str:
    if not isinstance(name, str) or not is_valid_camera_id(name):
        raise ExternalStreamError(
            "stream_name",
            "pattern",
            "1-64 characters: letters, digits, '_' or '-', starting with a letter or digit",
        )
    return name


def default_stream_type(url: str) -> str:
    return _DEFAULT_TYPES.get(urlsplit(url).scheme.lower(), "rtsp")


def validate_stream_type(stream_type: object, url: str) -> str:
    if stream_type is None:
        return default_stream_type(url)
    if not isinstance(stream_type, str) or not STREAM_TYPE_RE.fullmatch(stream_type):
        raise ExternalStreamError(
            "stream_type", "pattern", "1-32 characters: letters, digits, '_', '.' or '-'"
        )
    return stream_type


def mask_credentials(url: str) -> str:
    """The URL with every credential replaced by `***`, in the forms cameras use:
    `user:pass@host`, `?user=u&pwd=p`, `?password=p`, `;password=p`, `?token=t`, `#auth=x`.
    User names stay readable; only secrets are masked."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:cut], rest[cut:]
    if "@" in authority:
        userinfo, _, host = authority.rpartition("@")
        if ":" in userinfo:
            authority = f"{userinfo.split(':', 1)[0]}:{MASK}@{host}"

    def hide(match: re.Match[str]) -> str:
        if _SECRET_NAME.search(unquote(match["name"]).lower()):
            return f"{match['lead']}{match['name']}={MASK}"
        return match.group(0)

    return f"{scheme}{sep}{authority}{_URL_PARAM.sub(hide, tail)}"


def _parse_entries(data: object) -> list[ExternalStream]:
    if not isinstance(data, list):
        raise ValueError("top level is not a list")
    out: list[ExternalStream] = []
    for item in data:
        if not isinstance(item, dict):
            raise ValueError("entry is not an object")
        url = validate_stream_url(item.get("stream_url"))
        out.append(
            ExternalStream(
                stream_url=url,
                stream_name=validate_stream_name(item.get("stream_name")),
                stream_type=validate_stream_type(item.get("stream_type"), url),
                added_at=float(item.get("added_at", 0.0)),
            )
        )
    return out


class ExternalStreamStore:
    """Persistent list of external streams. Loads synchronously at construction."""

    def __init__(
        self, state_dir: str | os.PathLike[str], *, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = Path(state_dir) / FILE_NAME
        self._clock = clock
        self._lock = asyncio.Lock()
        self._streams: list[ExternalStream] = self._load()

    def _load(self) -> list[ExternalStream]:
        """An unusable file is moved aside (``*.corrupt-<time>``) and the list starts empty."""
        return load_recoverable(self.path, _parse_entries, list)

    def list(self) -> builtins.list[ExternalStream]:
        return list(self._streams)

    def get_by_url(self, stream_url: str) -> ExternalStream | None:
        return next((s for s in self._streams if s.stream_url == stream_url), None)

    async def add(
        self,
        stream_url: object,
        stream_name: object,
        stream_type: object = None,
        *,
        reserved_ids: Container[str] = (),
    ) -> ExternalStream:
        """Validate and persist. ``reserved_ids``: ids of existing cameras (name clashes)."""
        url = validate_stream_url(stream_url)
        name = validate_stream_name(stream_name)
        kind = validate_stream_type(stream_type, url)
        async with self._lock:
            if any(s.stream_url == url for s in self._streams):
                raise ExternalStreamError("stream_url", "duplicate", "this URL is already added")
            if name in reserved_ids or any(s.stream_name == name for s in self._streams):
                raise ExternalStreamError(
                    "stream_name", "duplicate", "a camera or stream with this name exists"
                )
            stream = ExternalStream(url, name, kind, self._clock())
            await self._save([*self._streams, stream])
            return stream

    async def remove(self, stream_url: str) -> ExternalStream:
        async with self._lock:
            stream = self.get_by_url(stream_url)
            if stream is None:
                raise ExternalStreamNotFound(stream_url)
            await self._save([s for s in self._streams if s is not stream])
            return stream

    async def _save(self, streams: builtins.list[ExternalStream]) -> None:
        payload = [s.public_dict() for s in streams]
        await asyncio.to_thread(self._write, payload)
        self._streams = streams

    def _write(self, payload: builtins.list[dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, json.dumps(payload, indent=2) + "\n", mode=0o600)
