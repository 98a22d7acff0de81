"""SIGHUP reload: apply what can change safely at run time, report the rest."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from camera_service import logging as service_logging
from camera_service.config import Config, ConfigError, load_config

if TYPE_CHECKING:
    from camera_service.app import Application

log = logging.getLogger("camera_service.app")  # the daemon's own lines keep one logger

RELOADABLE_KEYS = frozenset({"logging.level", "server.allowed_origins"})


@dataclass
class ReloadReport:
    applied: list[str]
    needs_restart: list[str]


def reload(app: Application) -> ReloadReport:
    """SIGHUP: apply what can change safely at run time, report the rest."""
    app.keys.reload()
    app.policies.reload()
    applied = ["auth.api_keys", "retention.policy"]
    try:
        fresh, _ = load_config(app.config_path)
    except ConfigError as exc:
        log.error("reload: configuration rejected, keeping the running one: %s", exc)
        return ReloadReport(applied, [])
    changed = changed_keys(app.config, fresh)
    if "logging.level" in changed:
        service_logging.set_level(fresh.logging.level)
    if "server.allowed_origins" in changed:
        origins = fresh.server.allowed_origins
        app.ws.config = app.ws.config.model_copy(update={"allowed_origins": origins})
    applied += sorted(changed & RELOADABLE_KEYS)
    needs_restart = sorted(changed - RELOADABLE_KEYS)
    logging_config = app.config.logging.model_copy(update={"level": fresh.logging.level})
    app.config = app.config.model_copy(update={"server": app.ws.config, "logging": logging_config})
    log.info("configuration reloaded", extra={"applied": applied, "needs_restart": needs_restart})
    return ReloadReport(applied, needs_restart)


def changed_keys(old: Config, new: Config) -> set[str]:
    """Dotted `section.key` names whose values differ."""
    before, after = old.model_dump(mode="json"), new.model_dump(mode="json")
    return {
        f"{section}.{key}"
        for section, values in after.items()
        for key, value in values.items()
        if before[section].get(key) != value
    }
