"""`ConfigError` and the wording of validation errors (the key and the rule)."""

from __future__ import annotations

from pydantic import ValidationError


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key and the rule."""


_RULE_HINTS = {"extra_forbidden": "unknown key"}


def describe_validation_error(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(root)"
        rule = _RULE_HINTS.get(item["type"], item["msg"])
        shown = "" if item["type"] == "extra_forbidden" else f" (got {item.get('input')!r})"
        lines.append(f"{key}: {rule}{shown}")
    return "invalid configuration: " + "; ".join(lines)
