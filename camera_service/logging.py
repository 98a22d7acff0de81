"""Logging: JSON or text lines, a request id per call, an audit channel, secrets redacted."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)
AUDIT_LOGGER = "camera_service.audit"

# JWTs, API keys, `token=` query values and camera passwords must never reach a log line.
_SECRET_PATTERNS = (
    re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"),
    re.compile(r"csk_[A-Za-z0-9]+_[A-Za-z0-9_-]+"),
    re.compile(r"((?:token|auth_token|api_key|secret)=)[^&\s\"']+", re.IGNORECASE),
    # Camera URL credentials (external streams): `rtsp://user:pass@`, `?pwd=`, `;password=`.
    re.compile(r"(://[^/\s:@\"'\\]*:)[^@\s/\"'\\]+(?=@)"),
    re.compile(r"([?&;#](?:password|passwd|pwd|pass|pw)=)[^&;#\s\"'\\]+", re.IGNORECASE),
)
_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def redact(text: str) -> str:
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "[REDACTED]", text)
    return text


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        entry.update(_extras(record))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, default=str, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = _extras(record)
        request_id = request_id_var.get()
        if request_id:
            extras["request_id"] = request_id
        if extras:
            line += " " + " ".join(f"{k}={v}" for k, v in extras.items())
        return redact(line)


def configure(level: str = "INFO", fmt: str = "json") -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_camera_service", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._camera_service = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    set_level(level)
    logging.getLogger("websockets").setLevel(logging.WARNING)


def set_level(level: str) -> None:
    logging.getLogger().setLevel(level.upper())


def audit(action: str, **fields: Any) -> None:
    logging.getLogger(AUDIT_LOGGER).info(action, extra={"audit": True, **fields})
