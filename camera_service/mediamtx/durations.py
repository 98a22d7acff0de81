"""Go durations as MediaMTX reads and echoes them (``10s``, ``1m0s``, ``500ms``, ``1d``)."""

from __future__ import annotations

import re

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
    """Format like Go's ``time.Duration.String()``.

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
    """Parse a Go/MediaMTX duration (``"1m0s"``, ``"500ms"``, ``"1d"``) into seconds.

    ``""`` is zero: MediaMTX echoes a zero duration as an empty string
    (``internal/conf/duration.go``, ``marshalInternal``), and ``24h`` as ``1d``.
    """
    text = text.strip()
    if text in ("", "0"):
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
