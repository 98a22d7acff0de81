"""Listing the recordings / snapshots directories: entries, the device index, lookup by name.

Storage layout and exposed names:

* ``<dir>/<name>`` — files written by FFmpeg (snapshots, recordings). Exposed as ``<name>``.
* ``<recordings>/<camera>/<segment>`` — segments written by MediaMTX (``recordPath`` =
  ``<recordings>/%path/...``). One level of sub-directories is scanned and each file is exposed
  as ``<camera>_<segment>``. Such a name passes the normal file-name rules and maps back to the
  file through :func:`locate` (``FileStore.path_for``): a top-level file of the same name wins,
  then the sub-directories in sorted order; listing drops shadowed duplicates so every listed
  name round-trips. Files whose exposed name would break the rules are not listed.

Device of a file: the index file ``<dir>/.index.json`` (a hidden name, therefore never listed
nor reachable through the name rules) maps user-chosen names to their device; it is written
atomically by :class:`DeviceIndex` (``FileStore.register``). Otherwise the device is parsed
from the name (``<device>_<YYYY-MM-DD_HH-MM-SS>...``) or, for MediaMTX segments, is the
sub-directory name; ``None`` when unknown.

Hidden files, symlinks, non-regular files and invalid names are skipped by listings. Everything
here blocks: the store runs it in worker threads.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypedDict

from camera_service.fsutil import atomic_write, load_recoverable
from camera_service.storage.errors import InvalidFilename, NotFound
from camera_service.storage.names import device_from_name, iso_utc, resolve_in, validate_filename

log = logging.getLogger(__name__)

FileKind = Literal["recordings", "snapshots"]
KINDS: tuple[FileKind, ...] = ("recordings", "snapshots")

INDEX_NAME = ".index.json"


class FileDict(TypedDict):
    filename: str
    device: str | None
    file_size: int
    modified_time: str


@dataclass(frozen=True)
class FileEntry:
    """One listed file."""

    kind: FileKind
    filename: str
    path: Path
    device: str | None
    size: int
    mtime: float

    def to_dict(self) -> FileDict:
        return {
            "filename": self.filename,
            "device": self.device,
            "file_size": self.size,
            "modified_time": iso_utc(self.mtime),
        }


@dataclass(frozen=True)
class FileListing:
    files: list[FileEntry]
    total: int


def _parse_index(data: object) -> dict[str, str]:
    if not isinstance(data, dict):
        raise ValueError("top level is not an object")
    return {str(k): v for k, v in data.items() if isinstance(v, str)}


class DeviceIndex:
    """``<dir>/.index.json``: user-chosen file name → device. Thread-safe, atomic writes."""

    def __init__(self, directory: Path) -> None:
        self._path = directory / INDEX_NAME
        self._lock = threading.Lock()

    def read(self) -> dict[str, str]:
        try:
            data = json.loads(self._path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable file index %s: %s", self._path, exc)
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(k): str(v) for k, v in data.items() if isinstance(v, str)}

    def check(self) -> None:
        load_recoverable(self._path, _parse_index, dict)

    def update(self, name: str, device: str | None) -> None:
        with self._lock:
            data = self.read()
            if device is None:
                if data.pop(name, None) is None:
                    return
            else:
                data[name] = device
            atomic_write(self._path, json.dumps(data, sort_keys=True, indent=0), mode=0o644)


def _is_plain_file(entry: os.DirEntry[str]) -> bool:
    return not entry.is_symlink() and entry.is_file(follow_symlinks=False)


def _is_plain_dir(entry: os.DirEntry[str]) -> bool:
    return not entry.is_symlink() and entry.is_dir(follow_symlinks=False)


def _valid(name: str) -> bool:
    try:
        validate_filename(name)
    except InvalidFilename:
        return False
    return True


def _scan_dir(directory: Path) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """(exposed name, entry) for plain files of ``directory``; sorted by name."""
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        if _valid(entry.name) and _is_plain_file(entry):
            yield entry.name, entry


def _plain_member(directory: Path, name: str) -> Path | None:
    """Resolved path of regular, non-symlink file ``directory/name``; None if absent.

    Raises :class:`InvalidFilename` for names that break the rules or escape ``directory``.
    """
    resolved = resolve_in(directory, name)
    try:
        st = os.lstat(directory / name)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return resolved if stat.S_ISREG(st.st_mode) else None


def _camera_dirs(directory: Path) -> list[os.DirEntry[str]]:
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except FileNotFoundError:
        return []
    return [e for e in entries if _valid(e.name) and _is_plain_dir(e)]


def scan(kind: FileKind, directory: Path, index: DeviceIndex) -> list[FileEntry]:
    """Every listed file of ``directory``, newest first (by mtime)."""
    devices = index.read()
    seen: set[str] = set()
    entries: list[FileEntry] = []
    for name, entry in _scan_dir(directory):
        seen.add(name)
        device = devices.get(name) or device_from_name(name)
        found = _entry(kind, name, entry, device)
        if found is not None:
            entries.append(found)
    if kind == "recordings":
        for sub in _camera_dirs(directory):
            for seg, entry in _scan_dir(Path(sub.path)):
                name = f"{sub.name}_{seg}"
                if name in seen or not _valid(name):
                    continue
                seen.add(name)
                found = _entry(kind, name, entry, devices.get(name) or sub.name)
                if found is not None:
                    entries.append(found)
    entries.sort(key=lambda e: (e.mtime, e.filename), reverse=True)
    return entries


def _entry(
    kind: FileKind, name: str, entry: os.DirEntry[str], device: str | None
) -> FileEntry | None:
    """None when the file vanished since the directory was read (deleted meanwhile)."""
    try:
        st = entry.stat(follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return FileEntry(kind, name, Path(entry.path).resolve(), device, st.st_size, st.st_mtime)


def locate(kind: FileKind, directory: Path, name: str) -> Path | None:
    """Resolved path of the listed file ``name``, or None; same rules as listing."""
    found = _plain_member(directory, name)
    if found is not None or kind != "recordings":
        return found
    for sub in _camera_dirs(directory):
        prefix = f"{sub.name}_"
        if name.startswith(prefix) and _valid(name[len(prefix) :]):
            found = _plain_member(Path(sub.path), name[len(prefix) :])
            if found is not None:
                return found
    return None


def entry_for(kind: FileKind, directory: Path, index: DeviceIndex, name: str) -> FileEntry:
    """The entry of the listed file ``name``; :class:`NotFound` when there is none."""
    path = locate(kind, directory, name)
    if path is None:
        raise NotFound(kind, name)
    try:
        st = path.stat()
    except FileNotFoundError as exc:
        raise NotFound(kind, name) from exc
    nested = path.parent != directory.resolve()
    fallback = path.parent.name if nested else device_from_name(name)
    device = index.read().get(name) or fallback
    return FileEntry(kind, name, path, device, st.st_size, st.st_mtime)
