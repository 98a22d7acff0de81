"""API keys: made by the CLI, stored hashed in the state directory, revocable while in use.

A key reads `csk_<id>_<secret>`; only SHA-256 of the whole key is stored. The secret part has
192 bits of entropy, so a fast hash is enough (a slow KDF protects low-entropy passwords).
The daemon re-reads the file when its mtime changes, so `camera-service keys revoke` in
another process takes effect at the next call of every open connection.

At construction (daemon start, every CLI command) a key file that cannot be used (empty,
truncated, not UTF-8, not JSON, a wrong shape, a record with missing fields) raises
:class:`~camera_service.fsutil.StateFileError` naming the file and the problem: the daemon
refuses to start rather than run with no keys (docs/security.md says why).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from camera_service.auth.identity import AuthError, Identity
from camera_service.auth.roles import Role
from camera_service.fsutil import StateFileError, atomic_write, load_required

log = logging.getLogger(__name__)

KEY_PREFIX = "csk_"


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    id: str
    name: str
    role: str
    hash: str
    created_at: str
    revoked_at: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def public(self) -> dict[str, str | None]:
        data = asdict(self)
        del data["hash"]
        return data


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def split_key(key: str) -> tuple[str, str] | None:
    if not key.startswith(KEY_PREFIX):
        return None
    key_id, sep, secret = key[len(KEY_PREFIX) :].partition("_")
    if not sep or not key_id or not secret:
        return None
    return key_id, secret


def looks_like_api_key(token: str) -> bool:
    return split_key(token) is not None


_RECORD_FIELDS = ("id", "name", "role", "hash", "created_at")
_KEY_FILE_ADVICE = (
    "restore it from a backup, or move it away to start without API keys "
    "(every key must then be created again)"
)


def parse_key_file(data: object) -> dict[str, ApiKeyRecord]:
    """The records of a parsed key file; ValueError naming the first problem."""
    if not isinstance(data, dict):
        raise ValueError(f"top level is a {type(data).__name__}, not an object")
    keys = data.get("keys")
    if not isinstance(keys, list):
        raise ValueError("'keys' is missing or not a list")
    records: dict[str, ApiKeyRecord] = {}
    for index, item in enumerate(keys):
        if not isinstance(item, dict):
            raise ValueError(f"keys[{index}] is not an object")
        for name in _RECORD_FIELDS:
            if not isinstance(item.get(name), str) or not item[name]:
                raise ValueError(f"keys[{index}] has no valid {name!r}")
        revoked = item.get("revoked_at")
        if revoked is not None and not isinstance(revoked, str):
            raise ValueError(f"keys[{index}] has an invalid 'revoked_at'")
        try:
            Role.parse(item["role"])
        except ValueError:
            raise ValueError(f"keys[{index}] has an unknown role {item['role']!r}") from None
        record = ApiKeyRecord(
            id=item["id"],
            name=item["name"],
            role=item["role"],
            hash=item["hash"],
            created_at=item["created_at"],
            revoked_at=revoked,
        )
        records[record.id] = record
    return records


class ApiKeyStore:
    def __init__(self, path: Path) -> None:
        """Raises :class:`StateFileError` when the key file exists but cannot be used."""
        self.path = path
        self._records: dict[str, ApiKeyRecord] = {}
        self._stamp: tuple[int, int] | None = None
        self._failed_stamp: tuple[int, int] | None = None
        self._load_at_start()

    def _load_at_start(self) -> None:
        stamp = self._file_stamp()
        try:
            self._records = load_required(self.path, parse_key_file, dict)
        except StateFileError as exc:
            raise StateFileError(exc.path, exc.problem, _KEY_FILE_ADVICE) from None
        self._stamp = stamp

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size

    def reload(self) -> None:
        """Re-read the file. When it cannot be used (truncated during an edit, unreadable,
        wrong shape) the last good keys stay in force and the error is logged once per
        version of the file; the next change of the file is read again. A missing file
        means no keys, as at start."""
        stamp = self._file_stamp()
        try:
            records: dict[str, ApiKeyRecord] = load_required(self.path, parse_key_file, dict)
        except StateFileError as exc:
            if stamp != self._failed_stamp:
                log.error(
                    "%s; keeping the %d keys loaded before",
                    exc,
                    len(self._records),
                    extra={"path": str(self.path)},
                )
            self._failed_stamp = stamp
            return
        self._records = records
        self._stamp = stamp
        self._failed_stamp = None

    def refresh_if_changed(self) -> None:
        stamp = self._file_stamp()
        if stamp != self._stamp and stamp != self._failed_stamp:
            self.reload()

    def _writable_state(self) -> None:
        """create/revoke write the whole file: refuse while it holds an edit we cannot read."""
        self.refresh_if_changed()
        if self._failed_stamp is not None:
            raise StateFileError(self.path, "it changed and cannot be read", _KEY_FILE_ADVICE)

    def _save(self) -> None:
        body = {"version": 1, "keys": [asdict(r) for r in self._records.values()]}
        atomic_write(self.path, json.dumps(body, indent=2) + "\n", mode=0o600)
        self._stamp = self._file_stamp()

    def create(self, name: str, role: Role) -> tuple[str, ApiKeyRecord]:
        """Make a key; the clear key is returned once and never stored."""
        self._writable_state()
        key_id = secrets.token_hex(4)
        while key_id in self._records:
            key_id = secrets.token_hex(4)
        key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(24)}"
        record = ApiKeyRecord(key_id, name, role.label, _hash(key), _now_iso())
        self._records[key_id] = record
        self._save()
        return key, record

    def revoke(self, key_id: str) -> ApiKeyRecord:
        self._writable_state()
        record = self._records.get(key_id)
        if record is None:
            raise KeyError(key_id)
        if record.active:
            record = ApiKeyRecord(**{**asdict(record), "revoked_at": _now_iso()})
            self._records[key_id] = record
            self._save()
        return record

    def list(self) -> list[ApiKeyRecord]:
        self.refresh_if_changed()
        return sorted(self._records.values(), key=lambda r: r.created_at)

    def verify(self, key: str, *, refresh: bool = True) -> Identity:
        """`refresh=False` skips the file check (no I/O: the caller refreshed the store)."""
        if refresh:
            self.refresh_if_changed()
        parts = split_key(key)
        record = self._records.get(parts[0]) if parts else None
        if record is None or not hmac.compare_digest(record.hash, _hash(key)):
            raise AuthError("invalid API key")
        if not record.active:
            raise AuthError("API key revoked")
        return Identity(f"key:{record.name}", Role.parse(record.role), "api_key", key_id=record.id)

    def is_active(self, key_id: str, *, refresh: bool = True) -> bool:
        """`refresh=False` for bulk checks right after one `refresh_if_changed()`."""
        if refresh:
            self.refresh_if_changed()
        record = self._records.get(key_id)
        return record is not None and record.active
