"""Safe file names and the recordings / snapshots file store.

Naming (pure, no I/O besides ``resolve_in``'s stat calls):

* user names must match ``^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`` and contain no ``..``;
  the extension is appended when missing;
* generated names are ``<device>_<YYYY-MM-DD_HH-MM-SS>`` (UTC) plus extension, with a
  ``_<n>`` suffix when that name is already taken.

Storage layout and exposed names:

* ``<dir>/<name>`` — files written by FFmpeg (snapshots, recordings). Exposed as ``<name>``.
* ``<recordings>/<camera>/<segment>`` — segments written by MediaMTX (``recordPath`` =
  ``<recordings>/%path/...``). One level of sub-directories is scanned and each file is exposed
  as ``<camera>_<segment>``. Such a name passes the normal file-name rules and maps back to the
  file through :meth:`FileStore.path_for`: a top-level file of the same name wins, then the
  sub-directories in sorted order; listing drops shadowed duplicates so every listed name
  round-trips. Files whose exposed name would break the rules are not listed.

Device of a file: the index file ``<dir>/.index.json`` (a hidden name, therefore never listed
nor reachable through the name rules) maps user-chosen names to their device; it is written
atomically by :meth:`FileStore.register`. Otherwise the device is parsed from the name
(``<device>_<YYYY-MM-DD_HH-MM-SS>...``) or, for MediaMTX segments, is the sub-directory name;
``None`` when unknown.

Hidden files, symlinks, non-regular files and invalid names are skipped by listings. All
file-system work runs in worker threads; ffprobe runs as a subprocess.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import logging
import os
import re
import stat
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypedDict

from camera_service.fsutil import atomic_write, load_recoverable
from camera_service.storage.probe import ProbeBusy, ProbePool

log = logging.getLogger(__name__)

FileKind = Literal["recordings", "snapshots"]
KINDS: tuple[FileKind, ...] = ("recordings", "snapshots")

FILENAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"  # also the params models' pattern
NAME_RE = re.compile(FILENAME_PATTERN)
MAX_NAME_LEN = 128
INDEX_NAME = ".index.json"
_STAMP_FORMAT = "%Y-%m-%d_%H-%M-%S"
_GENERATED_RE = re.compile(r"(?P<device>.+?)_(?P<stamp>\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2})")
_NAME_HINT = "use 1-128 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit"
PROBE_TIMEOUT_S = 15.0


# --------------------------------------------------------------------------- errors


class StorageError(Exception):
    """Base class of storage errors."""


class InvalidFilename(StorageError, ValueError):
    """A file name breaks the naming rules or does not denote a plain member of a directory."""

    def __init__(self, rule: str, hint: str) -> None:
        super().__init__(f"invalid filename ({rule}): {hint}")
        self.rule = rule
        self.hint = hint


class NotFound(StorageError):
    """No such file."""

    def __init__(self, kind: str, filename: str) -> None:
        super().__init__(f"{kind[:-1]} not found: {filename}")
        self.kind = kind
        self.filename = filename


class FileInUse(StorageError):
    """The file belongs to an active recording."""

    def __init__(self, filename: str) -> None:
        super().__init__(f"file is in use by an active recording: {filename}")
        self.filename = filename


class ProbeFailed(StorageError):
    """ffprobe could not be run or could not read the file."""

    def __init__(self, filename: str, detail: str) -> None:
        super().__init__(f"ffprobe failed for {filename}: {detail}")
        self.filename = filename
        self.detail = detail


# --------------------------------------------------------------------------- pure naming


def validate_filename(name: str) -> str:
    """Return ``name`` if it obeys the file-name rules, else raise :class:`InvalidFilename`."""
    if not isinstance(name, str) or not name:
        raise InvalidFilename("empty", "a file name is required")
    if len(name) > MAX_NAME_LEN:
        raise InvalidFilename("too_long", f"at most {MAX_NAME_LEN} characters")
    if ".." in name:
        raise InvalidFilename("dot_dot", "'..' is not allowed in a file name")
    if not NAME_RE.fullmatch(name):
        raise InvalidFilename("charset", _NAME_HINT)
    return name


def normalize_extension(ext: str) -> str:
    """``"jpg"`` / ``".jpg"`` → ``".jpg"`` (validated, lower case)."""
    ext = ext.lower()
    ext = ext if ext.startswith(".") else f".{ext}"
    if not re.fullmatch(r"\.[a-z0-9]{1,10}", ext):
        raise ValueError(f"bad extension: {ext!r}")
    return ext


def with_extension(name: str, ext: str, aliases: Iterable[str] = ()) -> str:
    """Validate ``name`` and append ``ext`` unless it already ends with it (or an alias)."""
    validate_filename(name)
    accepted = {normalize_extension(e) for e in (ext, *aliases)}
    if any(name.lower().endswith(e) for e in accepted):
        return name
    return validate_filename(name + normalize_extension(ext))


def format_stamp(when: datetime) -> str:
    """UTC ``YYYY-MM-DD_HH-MM-SS`` for ``when`` (naive datetimes are taken as UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime(_STAMP_FORMAT)


def generated_filename(
    device: str, ext: str, now: datetime, exists: Callable[[str], bool] = lambda _n: False
) -> str:
    """``<device>_<stamp><ext>``, or ``<device>_<stamp>_<n><ext>`` if taken already."""
    base = f"{device}_{format_stamp(now)}"
    suffix = normalize_extension(ext)
    candidate = validate_filename(base + suffix)
    counter = 1
    while exists(candidate):
        candidate = validate_filename(f"{base}_{counter}{suffix}")
        counter += 1
    return candidate


def device_from_name(name: str) -> str | None:
    """Device prefix of a generated name (``camera0_2026-01-02_03-04-05.mp4`` → ``camera0``)."""
    match = _GENERATED_RE.match(name)
    return match.group("device") if match else None


def stamp_from_name(name: str) -> datetime | None:
    """UTC time embedded in a generated name, if any."""
    match = _GENERATED_RE.match(name)
    if not match:
        return None
    return datetime.strptime(match.group("stamp"), _STAMP_FORMAT).replace(tzinfo=UTC)


def iso_utc(timestamp: float) -> str:
    """Epoch seconds → ISO 8601 UTC with a ``Z`` suffix."""
    text = datetime.fromtimestamp(timestamp, tz=UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def resolve_in(directory: Path, name: str) -> Path:
    """Path of ``name`` as a plain member of ``directory``, or :class:`InvalidFilename`.

    The name must obey the naming rules (so no separators, NUL, ``%`` or ``..``). The path
    need not exist; when it does it must be a regular file, and a symlink must resolve to a
    file directly inside ``directory``. Returns the fully resolved path.
    """
    validate_filename(name)
    try:
        base = directory.resolve()
        target = (base / name).resolve()
    except (OSError, RuntimeError) as exc:  # symlink loops and the like
        raise InvalidFilename("outside", "the name cannot be resolved safely") from exc
    if target.parent != base:
        raise InvalidFilename("outside", "the name must denote a file inside the directory")
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISREG(target.stat().st_mode):
            raise InvalidFilename("not_a_file", "the name denotes something other than a file")
    return target


# --------------------------------------------------------------------------- records


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


class RecordingInfo(TypedDict):
    filename: str
    device: str | None
    file_size: int
    duration: float | None
    format: str
    created_time: str
    modified_time: str


class SnapshotInfo(TypedDict):
    filename: str
    device: str | None
    file_size: int
    resolution: str
    created_time: str
    modified_time: str


# --------------------------------------------------------------------------- media probing


def mp4_top_level_boxes(path: Path, limit: int = 64) -> list[str]:
    """Types of the first ``limit`` top-level ISO-BMFF boxes of ``path`` (blocking)."""
    boxes: list[str] = []
    with path.open("rb") as fh:
        size_total = os.fstat(fh.fileno()).st_size
        pos = 0
        while pos + 8 <= size_total and len(boxes) < limit:
            fh.seek(pos)
            header = fh.read(16)
            size = int.from_bytes(header[:4], "big")
            boxes.append(header[4:8].decode("latin-1"))
            if size == 1 and len(header) == 16:
                size = int.from_bytes(header[8:16], "big")
            if size == 0:
                break
            if size < 8:
                break
            pos += size
    return boxes


def container_format(format_name: str, path: Path) -> str:
    """Map ffprobe's ``format_name`` to the API's ``fmp4`` / ``mp4`` / ``mkv`` (or pass it on)."""
    names = set(format_name.split(","))
    if "matroska" in names:
        return "mkv"
    if "mp4" in names or "mov" in names:
        return "fmp4" if "moof" in mp4_top_level_boxes(path) else "mp4"
    return format_name


async def run_ffprobe(binary: str, path: Path, args: list[str], timeout_s: float) -> dict[str, Any]:
    """Run ffprobe on ``path`` (absolute) with JSON output and return the parsed document."""
    cmd = [binary, "-v", "error", "-of", "json", *args, str(path)]
    try:
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        raise ProbeFailed(path.name, f"cannot run {binary}: {exc}") from exc
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await proc.communicate()
    except TimeoutError as exc:
        proc.kill()
        await proc.wait()
        raise ProbeFailed(path.name, f"timed out after {timeout_s} s") from exc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        raise ProbeFailed(path.name, err.decode(errors="replace").strip()[-300:] or "error")
    try:
        doc = json.loads(out)
    except json.JSONDecodeError as exc:
        raise ProbeFailed(path.name, "unreadable ffprobe output") from exc
    if not isinstance(doc, dict):
        raise ProbeFailed(path.name, "unexpected ffprobe output")
    return doc


def _float_or_none(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _dimensions(doc: dict[str, Any]) -> tuple[int, int]:
    """Width and height of the first stream of an ffprobe document; (0, 0) when absent."""
    streams = doc.get("streams")
    if not isinstance(streams, list) or not streams or not isinstance(streams[0], dict):
        return 0, 0
    try:
        return int(streams[0].get("width", 0)), int(streams[0].get("height", 0))
    except (TypeError, ValueError):
        return 0, 0


def _parse_iso(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# --------------------------------------------------------------------------- index


def _parse_index(data: object) -> dict[str, str]:
    if not isinstance(data, dict):
        raise ValueError("top level is not an object")
    return {str(k): v for k, v in data.items() if isinstance(v, str)}


class _DeviceIndex:
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


# --------------------------------------------------------------------------- scanning


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


# --------------------------------------------------------------------------- store


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
        self._indexes = {kind: _DeviceIndex(path) for kind, path in self._dirs.items()}
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

    # -- scanning (blocking helpers, run in threads)

    def _scan(self, kind: FileKind) -> list[FileEntry]:
        directory = self.directory(kind)
        index = self._indexes[kind].read()
        seen: set[str] = set()
        entries: list[FileEntry] = []
        for name, entry in _scan_dir(directory):
            seen.add(name)
            device = index.get(name) or device_from_name(name)
            found = self._entry(kind, name, entry, device)
            if found is not None:
                entries.append(found)
        if kind == "recordings":
            for sub in _camera_dirs(directory):
                for seg, entry in _scan_dir(Path(sub.path)):
                    name = f"{sub.name}_{seg}"
                    if name in seen or not _valid(name):
                        continue
                    seen.add(name)
                    found = self._entry(kind, name, entry, index.get(name) or sub.name)
                    if found is not None:
                        entries.append(found)
        entries.sort(key=lambda e: (e.mtime, e.filename), reverse=True)
        return entries

    @staticmethod
    def _entry(
        kind: FileKind, name: str, entry: os.DirEntry[str], device: str | None
    ) -> FileEntry | None:
        """None when the file vanished since the directory was read (deleted meanwhile)."""
        try:
            st = entry.stat(follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return FileEntry(kind, name, Path(entry.path).resolve(), device, st.st_size, st.st_mtime)

    def _locate(self, kind: FileKind, name: str) -> Path | None:
        """Resolved path of the listed file ``name``, or None; same rules as listing."""
        directory = self.directory(kind)
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

    def _entry_for(self, kind: FileKind, name: str) -> FileEntry:
        path = self._locate(kind, name)
        if path is None:
            raise NotFound(kind, name)
        try:
            st = path.stat()
        except FileNotFoundError as exc:
            raise NotFound(kind, name) from exc
        nested = path.parent != self.directory(kind).resolve()
        fallback = path.parent.name if nested else device_from_name(name)
        device = self._indexes[kind].read().get(name) or fallback
        return FileEntry(kind, name, path, device, st.st_size, st.st_mtime)

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
        created = self._created(entry, (fmt.get("tags") or {}).get("creation_time"))
        return {
            "filename": entry.filename,
            "device": entry.device,
            "file_size": entry.size,
            "duration": _float_or_none(fmt.get("duration")),
            "format": container,
            "created_time": created,
            "modified_time": iso_utc(entry.mtime),
        }

    async def snapshot_info(self, name: str) -> SnapshotInfo:
        entry = await self.stat("snapshots", name)
        doc = await self._probe(
            entry, ["-select_streams", "v:0", "-show_entries", "stream=width,height"]
        )
        width, height = _dimensions(doc)
        if width <= 0 or height <= 0:
            raise ProbeFailed(name, "no readable image stream")
        return {
            "filename": entry.filename,
            "device": entry.device,
            "file_size": entry.size,
            "resolution": f"{width}x{height}",
            "created_time": self._created(entry, None),
            "modified_time": iso_utc(entry.mtime),
        }

    @staticmethod
    def _created(entry: FileEntry, tag: object) -> str:
        """Creation time: the stamp in a generated name, else the media tag, else mtime."""
        when = stamp_from_name(entry.filename) or _parse_iso(tag)
        return iso_utc(when.timestamp()) if when else iso_utc(entry.mtime)

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
