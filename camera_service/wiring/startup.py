"""What can stop the daemon from starting: the state directory, the JWT secret, the key store
and the listening sockets. Each failure becomes one :class:`StartupError` line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from camera_service.auth.api_keys import ApiKeyStore
from camera_service.auth.jwt import load_or_create_secret
from camera_service.config import Config
from camera_service.fsutil import StateFileError


class StartupError(Exception):
    """The daemon cannot start; the message is the one log line an operator needs."""


def secret_bytes(config: Config) -> bytes:
    if config.auth.jwt_secret is not None:
        return config.auth.jwt_secret.get_secret_value().encode()
    path = config.jwt_secret_file
    try:
        return load_or_create_secret(path)
    except UnicodeDecodeError:
        problem = "not UTF-8 text"
    except ValueError as exc:
        problem = str(exc).replace(f" in {path}", "")
    except OSError as exc:
        problem = f"cannot be read or created ({exc.strerror or exc})"
    raise StartupError(
        f"state file {path} is unusable: {problem}; restore it from a backup, or remove it "
        "to generate a new secret (every JWT issued so far then stops working)"
    )


def prepare_state_dir(state: Path) -> None:
    try:
        state.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise StartupError(f"cannot create state directory {state}: {exc.strerror}") from exc


def open_key_store(path: Path) -> ApiKeyStore:
    try:
        return ApiKeyStore(path)
    except StateFileError as exc:
        raise StartupError(str(exc)) from None


async def listen(what: str, host: str, port: int, starter: Callable[[], Any]) -> None:
    try:
        await starter()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise StartupError(f"cannot listen for {what} on {host}:{port}: {reason}") from None
