"""The daemon's own MediaMTX credentials, generated on first start, stored 0600.

Two user/password pairs, so that the one that must appear on a command line cannot do more
than it needs:

* ``api``: the daemon's control-API client (``action: api``, also ``metrics``/``pprof`` and
  reading any camera path). Only sent in the Authorization header of the daemon's requests.
* ``publisher``: the FFmpeg publishers MediaMTX starts for the cameras (``runOnDemand`` /
  ``runOnInit`` URLs), valid only for ``publish`` to a camera path from loopback. It is part
  of the publisher's argv, so local users who can list processes can see it.

File ``<state_dir>/mediamtx_credentials.json``: ``{"version": 1, "api": {"user",
"password"}, "publisher": {"user", "password"}}``. Passwords are 32 random bytes in hex
(no characters that need quoting in URLs, shells or MediaMTX's ``$`` expansion).
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path

from camera_service.fsutil import StateFileError, atomic_write, move_aside, read_json_state

log = logging.getLogger(__name__)

CREDENTIALS_FILE = "mediamtx_credentials.json"
API_USER = "camera-service"
PUBLISHER_USER = "camera-service-publisher"


@dataclass(frozen=True, slots=True)
class Credential:
    user: str
    password: str

    def matches(self, user: str, password: str) -> bool:
        """Constant-time comparison of both parts."""
        same_user = hmac.compare_digest(self.user.encode(), user.encode())
        same_password = hmac.compare_digest(self.password.encode(), password.encode())
        return same_user and same_password


@dataclass(frozen=True, slots=True)
class DaemonCredentials:
    api: Credential
    publisher: Credential

    @classmethod
    def generate(cls) -> DaemonCredentials:
        return cls(
            Credential(API_USER, secrets.token_hex(32)),
            Credential(PUBLISHER_USER, secrets.token_hex(32)),
        )


def _parse(data: object) -> DaemonCredentials:
    """The credentials in the file's JSON; ValueError naming what is wrong."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    try:
        parts = [data[name] for name in ("api", "publisher")]
        creds = [Credential(str(p["user"]), str(p["password"])) for p in parts]
    except (KeyError, TypeError):
        raise ValueError("no api/publisher user and password") from None
    for cred in creds:
        if len(cred.password) < 32 or not cred.user or not cred.password.isalnum():
            raise ValueError("a weak or invalid password")
    return DaemonCredentials(creds[0], creds[1])


def _create(path: Path) -> DaemonCredentials:
    creds = DaemonCredentials.generate()
    body = {
        "version": 1,
        "api": {"user": creds.api.user, "password": creds.api.password},
        "publisher": {"user": creds.publisher.user, "password": creds.publisher.password},
    }
    atomic_write(path, json.dumps(body, indent=2) + "\n", mode=0o600)
    return creds


def load_or_create_credentials(path: Path) -> DaemonCredentials:
    """Read the credentials file, or create it (mode 0600) with fresh random passwords.

    Only the daemon uses these credentials (it puts them into the paths it provisions), so a
    damaged file is moved aside (``<name>.corrupt-<UTC time>``) and replaced by new ones;
    a file that cannot be read at all raises :class:`StateFileError`."""
    try:
        data = read_json_state(path)
        if data is None:
            return _create(path)
        return _parse(data)
    except StateFileError as exc:
        if "cannot be read" in exc.problem:
            raise
        problem = exc.problem
    except ValueError as exc:
        problem = str(exc)
    moved = move_aside(path)
    if moved is None:
        raise StateFileError(path, problem, "remove it to generate new credentials")
    log.error(
        "state file %s is unusable: %s; moved to %s, new MediaMTX credentials generated",
        path, problem, moved,
    )  # fmt: skip
    return _create(path)
