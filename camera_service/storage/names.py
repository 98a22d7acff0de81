"""Safe file names (pure, no I/O besides ``resolve_in``'s stat calls).

* user names must match ``^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`` and contain no ``..``;
  the extension is appended when missing;
* generated names are ``<device>_<YYYY-MM-DD_HH-MM-SS>`` (UTC) plus extension, with a
  ``_<n>`` suffix when that name is already taken.
"""

from __future__ import annotations

import contextlib
import re
import stat
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

from camera_service.storage.errors import InvalidFilename

FILENAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"  # also the params models' pattern
NAME_RE = re.compile(FILENAME_PATTERN)
MAX_NAME_LEN = 128
_STAMP_FORMAT = "%Y-%m-%d_%H-%M-%S"
_GENERATED_RE = re.compile(r"(?P<device>.+?)_(?P<stamp>\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2})")
_NAME_HINT = "use 1-128 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit"


def validate_filename(name: str) -> str:
    """Return ``name`` if it obeys the file-name rules, else raise :class:`InvalidFilename`."""
    if not isinstance(name, str) or not name:
        raise InvalidFilename("empty", "a file name is required")
    if len(name) > MAX_NAME_LEN:
        raise InvalidFilename("too_long", f"at most {MAX_NAME_LEN} characters")
    if ".." in name:
        raise InvalidFilename("dot_dot", "'..' is not allowed in a file name")
    if not NAME_RE.fullmatch(name):
        raise InvalidFilename("charset", _NAME_HINT)
    return name


def normalize_extension(ext: str) -> str:
    """``"jpg"`` / ``".jpg"`` → ``".jpg"`` (validated, lower case)."""
    ext = ext.lower()
    ext = ext if ext.startswith(".") else f".{ext}"
    if not re.fullmatch(r"\.[a-z0-9]{1,10}", ext):
        raise ValueError(f"bad extension: {ext!r}")
    return ext


def with_extension(name: str, ext: str, aliases: Iterable[str] = ()) -> str:
    """Validate ``name`` and append ``ext`` unless it already ends with it (or an alias)."""
    validate_filename(name)
    accepted = {normalize_extension(e) for e in (ext, *aliases)}
    if any(name.lower().endswith(e) for e in accepted):
        return name
    return validate_filename(name + normalize_extension(ext))


def format_stamp(when: datetime) -> str:
    """UTC ``YYYY-MM-DD_HH-MM-SS`` for ``when`` (naive datetimes are taken as UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime(_STAMP_FORMAT)


def generated_filename(
    device: str, ext: str, now: datetime, exists: Callable[[str], bool] = lambda _n: False
) -> str:
    """``<device>_<stamp><ext>``, or ``<device>_<stamp>_<n><ext>`` if taken already."""
    base = f"{device}_{format_stamp(now)}"
    suffix = normalize_extension(ext)
    candidate = validate_filename(base + suffix)
    counter = 1
    while exists(candidate):
        candidate = validate_filename(f"{base}_{counter}{suffix}")
        counter += 1
    return candidate


def device_from_name(name: str) -> str | None:
    """Device prefix of a generated name (``camera0_2026-01-02_03-04-05.mp4`` → ``camera0``)."""
    match = _GENERATED_RE.match(name)
    return match.group("device") if match else None


def stamp_from_name(name: str) -> datetime | None:
    """UTC time embedded in a generated name, if any."""
    match = _GENERATED_RE.match(name)
    if not match:
        return None
    return datetime.strptime(match.group("stamp"), _STAMP_FORMAT).replace(tzinfo=UTC)


def iso_utc(timestamp: float) -> str:
    """Epoch seconds → ISO 8601 UTC with a ``Z`` suffix."""
    text = datetime.fromtimestamp(timestamp, tz=UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def resolve_in(directory: Path, name: str) -> Path:
    """Path of ``name`` as a plain member of ``directory``, or :class:`InvalidFilename`.

    The name must obey the naming rules (so no separators, NUL, ``%`` or ``..``). The path
    need not exist; when it does it must be a regular file, and a symlink must resolve to a
    file directly inside ``directory``. Returns the fully resolved path.
    """
    validate_filename(name)
    try:
        base = directory.resolve()
        target = (base / name).resolve()
    except (OSError, RuntimeError) as exc:  # symlink loops and the like
        raise InvalidFilename("outside", "the name cannot be resolved safely") from exc
    if target.parent != base:
        raise InvalidFilename("outside", "the name must denote a file inside the directory")
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISREG(target.stat().st_mode):
            raise InvalidFilename("not_a_file", "the name denotes something other than a file")
    return target
