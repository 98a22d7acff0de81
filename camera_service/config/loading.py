"""Where the values come from: the config file lookup, YAML, `CAMERA_SERVICE__…` env overrides."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from camera_service.config.errors import ConfigError, describe_validation_error
from camera_service.config.model import Config

ENV_PREFIX = "CAMERA_SERVICE__"
CONFIG_ENV_VAR = "CAMERA_SERVICE_CONFIG"
SYSTEM_CONFIG = Path("/etc/camera-service/config.yaml")
LOCAL_CONFIG = Path("config.yaml")


def find_config_file(explicit: str | Path | None, environ: Mapping[str, str]) -> Path | None:
    """The first config file of the lookup order that applies; an explicit path must exist."""
    if explicit:
        return Path(explicit)
    if environ.get(CONFIG_ENV_VAR):
        return Path(environ[CONFIG_ENV_VAR])
    for candidate in (SYSTEM_CONFIG, LOCAL_CONFIG):
        if candidate.is_file():
            return candidate
    return None


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections at the top level")
    return data


def _parse_env_value(raw: str) -> Any:
    """JSON when it parses (numbers, booleans, lists, objects), the raw string otherwise."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Nested dict from `CAMERA_SERVICE__SECTION__KEY[__SUBKEY]` variables."""
    result: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        keys = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        if not all(keys):
            raise ConfigError(f"environment variable {name}: empty key segment")
        node = result
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"environment variable {name}: {key} is not a section")
            node = child
        node[keys[-1]] = _parse_env_value(raw)
    return result


def deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def build_config(data: Mapping[str, Any]) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


def load_config(
    explicit: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> tuple[Config, Path | None]:
    """Load the effective configuration and the file it came from (None: defaults only)."""
    environ = os.environ if environ is None else environ
    path = find_config_file(explicit, environ)
    data = read_yaml(path) if path else {}
    data = deep_merge(data, env_overrides(environ))
    if overrides:
        data = deep_merge(data, overrides)
    return build_config(data), path
