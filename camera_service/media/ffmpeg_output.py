"""FFmpeg output, parsed without I/O: stderr lines, error summaries, ``-progress`` blocks."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterable

_MAX_LINE = 2000


class LineSplitter:
    """Splits a byte-less text stream into lines on ``\\n`` or ``\\r`` (FFmpeg uses both)."""

    def __init__(self, max_line: int = _MAX_LINE) -> None:
        self._buf = ""
        self._max = max_line

    def feed(self, text: str) -> list[str]:
        parts = re.split(r"[\r\n]", self._buf + text)
        self._buf = parts.pop()
        if len(self._buf) > self._max:
            parts.append(self._buf)
            self._buf = ""
        return [p[: self._max] for p in parts if p.strip()]

    def flush(self) -> list[str]:
        rest, self._buf = self._buf, ""
        return [rest[: self._max]] if rest.strip() else []


_ERROR_HINT = re.compile(
    r"error|invalid|no such|denied|cannot|could not|failed|not found|busy|unable|"
    r"unrecognized|unknown|no space|broken",
    re.IGNORECASE,
)


def describe_returncode(returncode: int | None) -> str:
    if returncode is None:
        return "process still running"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"process killed by {name}"
    return f"process exited with code {returncode}"


def summarize_stderr(lines: Iterable[str], returncode: int | None) -> str:
    """The most telling stderr line: the last that looks like an error; else, when killed by a
    signal, that signal; else the last line or the exit status."""
    items = [line.strip() for line in lines if line.strip()]
    for line in reversed(items):
        if _ERROR_HINT.search(line):
            return line
    if items and (returncode is None or returncode >= 0):
        return items[-1]
    return describe_returncode(returncode)


class ProgressParser:
    """Parses FFmpeg ``-progress`` output (``key=value`` lines, blocks end with ``progress=``)."""

    def __init__(self) -> None:
        self._block: dict[str, str] = {}

    def feed(self, line: str) -> dict[str, str] | None:
        key, sep, value = line.strip().partition("=")
        if not sep:
            return None
        self._block[key.strip()] = value.strip()
        if key.strip() != "progress":
            return None
        block, self._block = self._block, {}
        return block
