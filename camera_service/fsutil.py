"""Small filesystem helpers shared by the stores in the state directory.

State files follow one rule (docs/security.md, "Faults and storage"):

* a write goes to a temporary file in the same directory, is fsynced and renamed over the old
  file, so a reader (or the next start after a crash or a full disk) sees the old or the new
  file, never a part of one; a failed write leaves the old file and no temporary behind;
* at start a file that cannot be used (empty, truncated, not UTF-8, not JSON, wrong shape) is
  reported with its path and the problem. Files the daemon can rebuild are moved aside to
  ``<name>.corrupt-<UTC time>`` and the daemon starts with their defaults
  (:func:`load_recoverable`); credential files (the API key store, the JWT secret) stop the
  start instead (:class:`StateFileError`), because starting without them would silently lock
  out every client or invalidate every token.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from pydantic import ValidationError

log = logging.getLogger(__name__)

T = TypeVar("T")

# Problems a parser may raise for a file of the wrong shape.
SHAPE_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    ValidationError,
)


class StateFileError(ValueError):
    """A state file cannot be used; ``str()`` names the file and the problem."""

    def __init__(self, path: Path, problem: str, advice: str = "") -> None:
        message = f"state file {path} is unusable: {problem}"
        super().__init__(f"{message}; {advice}" if advice else message)
        self.path = path
        self.problem = problem


def atomic_write(path: Path, text: str, mode: int = 0o600) -> None:
    """Write `text` to `path` so readers see the old or the new file, never a partial one.

    A failure (no space, read-only file system…) leaves the old file untouched, removes the
    temporary file and raises an :class:`OSError` whose ``filename`` is ``path``.
    """
    try:
        _atomic_write(path, text, mode)
    except OSError as exc:
        if exc.filename == str(path):
            raise
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc


def _atomic_write(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_json_state(path: Path) -> object | None:
    """The parsed JSON of a state file; None when it does not exist.

    Raises :class:`StateFileError` when it cannot be read, is empty, is not UTF-8 or is not
    JSON. A successful write is never empty, so an empty file is a damaged one.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateFileError(path, f"cannot be read ({exc.strerror or exc})") from exc
    if not raw.strip():
        raise StateFileError(path, "the file is empty")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StateFileError(path, f"not UTF-8 text (byte {exc.start})") from exc
    try:
        data: object = json.loads(text)
    except ValueError as exc:
        raise StateFileError(path, f"not valid JSON ({exc})") from exc
    return data


def move_aside(path: Path, now: datetime | None = None) -> Path | None:
    """Rename ``path`` to ``<name>.corrupt-<UTC time>`` (a free name); None if that failed."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    try:
        os.replace(path, target)
    except OSError as exc:
        log.error("cannot move %s aside: %s", path, exc.strerror or exc)
        return None
    return target


def load_recoverable(path: Path, parse: Callable[[object], T], default: Callable[[], T]) -> T:
    """Load a state file the daemon can rebuild: ``default()`` when absent; when it is
    unusable (unreadable JSON, or ``parse`` raising one of :data:`SHAPE_ERRORS`) it is moved
    aside, an error naming both files and the problem is logged, and ``default()`` returned.
    """
    try:
        data = read_json_state(path)
        if data is None:
            return default()
        return parse(data)
    except StateFileError as exc:
        problem = exc.problem
    except SHAPE_ERRORS as exc:
        problem = f"unexpected content ({_describe(exc)})"
    target = move_aside(path)
    where = f"moved to {target}" if target is not None else "left in place"
    log.error("state file %s is unusable: %s; %s, starting with defaults", path, problem, where)
    return default()


def load_required(path: Path, parse: Callable[[object], T], default: Callable[[], T]) -> T:
    """Load a state file the daemon must not rebuild on its own (credentials): ``default()``
    when absent, else the parsed content; raises :class:`StateFileError` naming the file and
    the problem when it is unusable."""
    data = read_json_state(path)
    if data is None:
        return default()
    try:
        return parse(data)
    except SHAPE_ERRORS as exc:
        raise StateFileError(path, f"unexpected content ({_describe(exc)})") from exc


def _describe(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "top level"
        return f"{where}: {first.get('msg', 'invalid')}"
    if isinstance(exc, KeyError):
        return f"missing member {exc.args[0]!r}" if exc.args else "missing member"
    return str(exc) or type(exc).__name__
