"""File, storage and retention methods over the recordings and snapshots directories."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from camera_service.auth.roles import Role
from camera_service.cameras.model import CAMERA_ID_PATTERN
from camera_service.rpc.errors import DependencyFailed, InvalidParams, InvalidState, NotFound
from camera_service.rpc.registry import NoParams, Params, Registry, Result
from camera_service.rpc.session import CallContext
from camera_service.storage import errors as storage_errors
from camera_service.storage import usage
from camera_service.storage.files import FileStore
from camera_service.storage.links import DownloadLinks
from camera_service.storage.listing import FileKind
from camera_service.storage.names import FILENAME_PATTERN
from camera_service.storage.retention import PolicyStore, RetentionPolicy, cleanup


class ListParams(Params):
    limit: int = Field(50, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=10_000_000)
    device: str | None = Field(None, pattern=CAMERA_ID_PATTERN)


class FilenameParams(Params):
    filename: str = Field(..., pattern=FILENAME_PATTERN, description="A name from a listing")


class RetentionParams(Params):
    policy_type: Literal["age", "size", "manual"]
    max_age_days: float | None = Field(None, gt=0, le=36500)
    max_size_gb: float | None = Field(None, gt=0, le=1_000_000)
    enabled: bool = True


class FileItem(Result):
    filename: str
    device: str | None
    file_size: int
    modified_time: str
    download_url: str


class FileList(Result):
    files: list[FileItem]
    total: int
    limit: int
    offset: int


class RecordingInfoResult(Result):
    filename: str
    device: str | None
    file_size: int
    duration: float | None
    format: str
    created_time: str
    modified_time: str
    download_url: str


class SnapshotInfoResult(Result):
    filename: str
    device: str | None
    file_size: int
    resolution: str
    created_time: str
    download_url: str


class DeleteResult(Result):
    filename: str
    deleted: bool
    message: str


class StorageInfoResult(Result):
    total_space: int
    used_space: int
    available_space: int
    usage_percentage: float
    recordings_size: int
    snapshots_size: int
    low_space_warning: bool
    critical: bool


class RetentionResult(Result):
    policy_type: str
    max_age_days: float | None
    max_size_gb: float | None
    enabled: bool
    message: str


class CleanupResultModel(Result):
    cleanup_executed: bool
    files_deleted: int
    space_freed: int
    message: str


@dataclass
class FileDeps:
    files: FileStore
    links: DownloadLinks
    policies: PolicyStore
    active_files: Callable[[], Iterable[Path]]
    warn_percent: float
    block_percent: float
    disk_usage: usage.DiskUsageFn = usage.system_disk_usage


@contextlib.contextmanager
def translated_storage_errors(kind: str, filename: str) -> Iterator[None]:
    resource = "recording" if kind == "recordings" else "snapshot"
    try:
        yield
    except storage_errors.InvalidFilename as exc:
        raise InvalidParams("filename", exc.rule, exc.hint) from None
    except storage_errors.NotFound:
        raise NotFound(resource, filename) from None
    except storage_errors.FileInUse:
        raise InvalidState(
            f"{filename} belongs to an active recording; stop it first.",
            "RECORDING",
            ["STOPPED"],
        ) from None
    except storage_errors.ProbeFailed as exc:
        raise DependencyFailed("ffprobe", exc.detail) from None


def register(registry: Registry, deps: FileDeps) -> None:
    def url(kind: FileKind, ctx: CallContext, filename: str) -> str:
        return deps.links.url(kind, filename, ctx.session.host)

    async def listing(kind: FileKind, ctx: CallContext, params: ListParams) -> dict[str, Any]:
        found = await deps.files.list(kind, params.limit, params.offset, params.device)
        items = [{**e.to_dict(), "download_url": url(kind, ctx, e.filename)} for e in found.files]
        return {
            "files": items,
            "total": found.total,
            "limit": params.limit,
            "offset": params.offset,
        }

    @registry.method("list_recordings", params=ListParams, result=FileList, role=Role.VIEWER)
    async def list_recordings(ctx: CallContext, params: ListParams) -> dict[str, Any]:
        """Recordings, newest first, paginated, optionally for one camera."""
        return await listing("recordings", ctx, params)

    @registry.method("list_snapshots", params=ListParams, result=FileList, role=Role.VIEWER)
    async def list_snapshots(ctx: CallContext, params: ListParams) -> dict[str, Any]:
        """Snapshots, newest first, paginated, optionally for one camera."""
        return await listing("snapshots", ctx, params)

    @registry.method(
        "get_recording_info",
        params=FilenameParams,
        result=RecordingInfoResult,
        role=Role.VIEWER,
    )
    async def get_recording_info(ctx: CallContext, params: FilenameParams) -> dict[str, Any]:
        """Size, times, and duration and format read from the media itself."""
        with translated_storage_errors("recordings", params.filename):
            info = await deps.files.recording_info(params.filename)
        return {**info, "download_url": url("recordings", ctx, params.filename)}

    @registry.method(
        "get_snapshot_info", params=FilenameParams, result=SnapshotInfoResult, role=Role.VIEWER
    )
    async def get_snapshot_info(ctx: CallContext, params: FilenameParams) -> dict[str, Any]:
        """Size, time and resolution read from the image."""
        with translated_storage_errors("snapshots", params.filename):
            info = await deps.files.snapshot_info(params.filename)
        return {**info, "download_url": url("snapshots", ctx, params.filename)}

    async def delete(kind: FileKind, filename: str) -> dict[str, Any]:
        with translated_storage_errors(kind, filename):
            await deps.files.delete(kind, filename, deps.active_files())
        return {"filename": filename, "deleted": True, "message": f"{filename} deleted"}

    @registry.method(
        "delete_recording", params=FilenameParams, result=DeleteResult, role=Role.ADMIN
    )
    async def delete_recording(ctx: CallContext, params: FilenameParams) -> dict[str, Any]:
        """Delete a recording; the file of an active recording is refused (-32020)."""
        return await delete("recordings", params.filename)

    @registry.method("delete_snapshot", params=FilenameParams, result=DeleteResult, role=Role.ADMIN)
    async def delete_snapshot(ctx: CallContext, params: FilenameParams) -> dict[str, Any]:
        """Delete a snapshot."""
        return await delete("snapshots", params.filename)

    @registry.method("get_storage_info", result=StorageInfoResult, role=Role.ADMIN)
    async def get_storage_info(ctx: CallContext, params: NoParams) -> dict[str, Any]:
        """Disk space, space used by recordings and snapshots, warning and critical flags."""
        info = await usage.storage_info(
            deps.files.directory("recordings"),
            deps.files.directory("snapshots"),
            deps.warn_percent,
            deps.block_percent,
            deps.disk_usage,
        )
        return dict(info)

    @registry.method(
        "set_retention_policy", params=RetentionParams, result=RetentionResult, role=Role.ADMIN
    )
    async def set_retention_policy(ctx: CallContext, params: RetentionParams) -> dict[str, Any]:
        """Store the retention policy (age, size or manual); persisted across restarts."""
        try:
            policy = RetentionPolicy(**params.model_dump())
        except ValueError as exc:
            rule = str(exc).splitlines()[-1].strip()
            hint = "age needs max_age_days, size needs max_size_gb"
            raise InvalidParams("policy_type", rule, hint) from None
        stored = await deps.policies.save(policy)
        return {**stored.model_dump(), "message": "retention policy saved"}

    @registry.method("get_retention_policy", result=RetentionResult, role=Role.ADMIN, inline=True)
    async def get_retention_policy(ctx: CallContext, params: NoParams) -> dict[str, Any]:
        """The stored retention policy (what cleanup_old_files and the cleanup loop apply)."""
        return {**deps.policies.policy.model_dump(), "message": "current retention policy"}

    @registry.method("cleanup_old_files", result=CleanupResultModel, role=Role.ADMIN)
    async def cleanup_old_files(ctx: CallContext, params: NoParams) -> dict[str, Any]:
        """Apply the retention policy now; never touches files of active recordings."""
        result = await cleanup(deps.files, deps.policies.policy, deps.active_files())
        return dict(result)
