"""Failed writes → catalog errors: a full disk is -32060, storage that cannot be written at all
(read-only, no permission, I/O error) is -32050 with dependency ``storage``. The detail names
the file by its base name only, never by a server path."""

from __future__ import annotations

import logging
from pathlib import Path

from camera_service.rpc.errors import DependencyFailed, InsufficientStorage, RpcError
from camera_service.storage.faults import classify
from camera_service.storage.usage import block_threshold_bytes, system_disk_usage

log = logging.getLogger(__name__)

# The threshold reported for a write refused by the file system itself (the configured
# storage.block_percent guards recordings and snapshots before they start).
DEFAULT_BLOCK_PERCENT = 95.0


def storage_rpc_error(exc: BaseException) -> RpcError | None:
    """The catalog error for a failed write, None when ``exc`` is not a storage fault."""
    fault = classify(exc)
    if fault is None:
        return None
    assert isinstance(exc, OSError)
    name = Path(str(exc.filename)).name if exc.filename else None
    if fault.kind == "no_space":
        free, threshold = 0, 1
        if exc.filename:
            try:
                usage = system_disk_usage(Path(str(exc.filename)).parent)
                free = usage.free
                threshold = max(block_threshold_bytes(usage, DEFAULT_BLOCK_PERCENT), free + 1)
            except OSError:
                pass
        return InsufficientStorage(free, threshold)
    what = f"cannot write {name}" if name else "cannot write"
    return DependencyFailed("storage", f"{what}: {fault.reason}")
