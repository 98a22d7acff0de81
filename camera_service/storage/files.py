"""The recordings / snapshots file store: listing, lookup, allocation, probing, deletion.

Naming rules are in :mod:`~camera_service.storage.names`, the directory layout, listing and
device index in :mod:`~camera_service.storage.listing`, ffprobe and the info records in
:mod:`~camera_service.storage.mediainfo`, the errors in :mod:`~camera_service.storage.errors`.
All file-system work runs in worker threads; ffprobe runs as a subprocess.
"""

from __future__ import annotations

import asyncio
import builtins
import os
from collections.abc import Awaitable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from camera_service.storage import listing
from camera_service.storage.errors import FileInUse, InvalidFilename, NotFound, ProbeFailed
from camera_service.storage.listing import DeviceIndex, FileEntry, FileKind, FileListing
from camera_service.storage.mediainfo import (
    RecordingInfo,
    SnapshotInfo,
    container_format,
    created_time,
    dimensions,
    float_or_none,
    run_ffprobe,
)
from camera_service.storage.names import (
    device_from_name,
    generated_filename,
    iso_utc,
    resolve_in,
    validate_filename,
    with_extension,
)
from camera_service.storage.probe import ProbeBusy, ProbePool

PROBE_TIMEOUT_S = 15.0


class FileStore:
    """Recordings and snapshots on disk: listing, lookup, probing, deletion."""

    def __init__(
        self,
        recordings_dir: Path | str,
        snapshots_dir: Path | str,
        ffprobe_binary: str = "ffprobe",
        probe_timeout: float = PROBE_TIMEOUT_S,
        max_probes: int = 4,
    ) -> None:
        self._dirs: dict[FileKind, Path] = {
            "recordings": Path(recordings_dir),
            "snapshots": Path(snapshots_dir),
        }
        self._indexes = {kind: DeviceIndex(path) for kind, path in self._dirs.items()}
        self.ffprobe_binary = ffprobe_binary
        self.probe_timeout = probe_timeout
        self.probes = ProbePool(max_processes=max_probes, wait_timeout=probe_timeout)

    # -- basics

    def directory(self, kind: FileKind) -> Path:
        if kind not in self._dirs:
            raise ValueError(f"unknown file kind: {kind!r}")
        return self._dirs[kind]

    def ensure_dirs(self) -> None:
        """Create both directories and check their indexes (blocking; call at start-up): an
        unusable index is moved aside like every damaged state file (fsutil)."""
        for kind, path in self._dirs.items():
            path.mkdir(parents=True, exist_ok=True)
            self._indexes[kind].check()

    # -- lookup (blocking helpers, run in threads)

    def _scan(self, kind: FileKind) -> builtins.list[FileEntry]:
        return listing.scan(kind, self.directory(kind), self._indexes[kind])

    def _locate(self, kind: FileKind, name: str) -> Path | None:
        return listing.locate(kind, self.directory(kind), name)

    def _entry_for(self, kind: FileKind, name: str) -> FileEntry:
        return listing.entry_for(kind, self.directory(kind), self._indexes[kind], name)

    # -- public async API

    async def list(
        self, kind: FileKind, limit: int = 50, offset: int = 0, device: str | None = None
    ) -> FileListing:
        """One page of files of ``kind``, newest first (by mtime), plus the total count.
        Empty files are not listed: a name reserved by a recording that is still starting,
        or the remains of a capture that wrote nothing."""
        if limit < 1 or offset < 0:
            raise ValueError("limit must be >= 1 and offset >= 0")
        entries = [e for e in await self.entries(kind) if e.size > 0]
        if device is not None:
            entries = [e for e in entries if e.device == device]
        return FileListing(entries[offset : offset + limit], len(entries))

    async def entries(self, kind: FileKind) -> builtins.list[FileEntry]:
        """Every file of ``kind``, newest first."""
        return await asyncio.to_thread(self._scan, kind)

    async def path_for(self, kind: FileKind, name: str) -> Path:
        """Resolved path of an existing listed file (for downloads); NotFound otherwise."""
        return (await self.stat(kind, name)).path

    async def stat(self, kind: FileKind, name: str) -> FileEntry:
        """The entry of one existing file; :class:`NotFound` / :class:`InvalidFilename`."""
        return await asyncio.to_thread(self._entry_for, kind, name)

    async def exists(self, kind: FileKind, name: str) -> bool:
        return await asyncio.to_thread(self._locate, kind, name) is not None

    async def allocate(
        self,
        kind: FileKind,
        device: str,
        ext: str,
        requested: str | None = None,
        now: datetime | None = None,
        ext_aliases: Iterable[str] = (),
    ) -> Path:
        """Choose the path of a new file.

        With ``requested``: validate, add the extension, refuse an existing name
        (``InvalidFilename("exists")``) and record its device in the index. Without: a
        generated, unique name. The file itself is not created.
        """
        return await asyncio.to_thread(
            self._allocate, kind, device, ext, requested, now or datetime.now(UTC), ext_aliases
        )

    def _allocate(
        self,
        kind: FileKind,
        device: str,
        ext: str,
        requested: str | None,
        now: datetime,
        ext_aliases: Iterable[str],
    ) -> Path:
        directory = self.directory(kind)
        directory.mkdir(parents=True, exist_ok=True)
        if requested is None:
            name = generated_filename(device, ext, now, lambda n: self._locate(kind, n) is not None)
            return resolve_in(directory, name)
        name = with_extension(requested, ext, ext_aliases)
        if self._locate(kind, name) is not None:
            raise InvalidFilename("exists", f"a file named {name} already exists")
        path = resolve_in(directory, name)
        if device_from_name(name) != device:
            self._indexes[kind].update(name, device)
        return path

    async def register(self, kind: FileKind, name: str, device: str) -> None:
        """Record ``device`` for ``name`` in the directory's index."""
        validate_filename(name)
        await asyncio.to_thread(self._indexes[kind].update, name, device)

    async def _probe(self, entry: FileEntry, args: builtins.list[str]) -> dict[str, Any]:
        """ffprobe's answer for an entry, through the bounded, cached pool: keyed by path,
        size and modification time, so a file that changed is probed again."""
        key = (str(entry.path), entry.size, entry.mtime, tuple(args))

        def run() -> Awaitable[dict[str, Any]]:
            return run_ffprobe(self.ffprobe_binary, entry.path, args, self.probe_timeout)

        try:
            return await self.probes.probe(key, run)
        except ProbeBusy as exc:
            raise ProbeFailed(entry.filename, str(exc)) from None

    async def recording_info(self, name: str) -> RecordingInfo:
        entry = await self.stat("recordings", name)
        doc = await self._probe(entry, ["-show_format"])
        fmt = doc.get("format") or {}
        fmt_name = str(fmt.get("format_name") or "unknown")
        container = await asyncio.to_thread(container_format, fmt_name, entry.path)
        created = created_time(entry, (fmt.get("tags") or {}).get("creation_time"))
        return {
            "filename": entry.filename,
            "device": entry.device,
            "file_size": entry.size,
            "duration": float_or_none(fmt.get("duration")),
            "format": container,
            "created_time": created,
            "modified_time": iso_utc(entry.mtime),
        }

    async def snapshot_info(self, name: str) -> SnapshotInfo:
        entry = await self.stat("snapshots", name)
        doc = await self._probe(
            entry, ["-select_streams", "v:0", "-show_entries", "stream=width,height"]
        )
        width, height = dimensions(doc)
        if width <= 0 or height <= 0:
            raise ProbeFailed(name, "no readable image stream")
        return {
            "filename": entry.filename,
            "device": entry.device,
            "file_size": entry.size,
            "resolution": f"{width}x{height}",
            "created_time": created_time(entry, None),
            "modified_time": iso_utc(entry.mtime),
        }

    async def delete(
        self, kind: FileKind, name: str, active_files: Iterable[Path] = ()
    ) -> FileEntry:
        """Delete one file; :class:`FileInUse` for an active recording's file."""
        return await asyncio.to_thread(self._delete, kind, name, set(active_files))

    def _delete(self, kind: FileKind, name: str, active_files: set[Path]) -> FileEntry:
        entry = self._entry_for(kind, name)
        if entry.path in {_resolved(p) for p in active_files}:
            raise FileInUse(name)
        try:
            entry.path.unlink()
        except FileNotFoundError as exc:
            raise NotFound(kind, name) from exc
        self._indexes[kind].update(name, None)
        return entry


def _resolved(path: Path) -> Path:
    try:
        return Path(path).resolve()
    except OSError:
        return Path(os.path.abspath(path))
