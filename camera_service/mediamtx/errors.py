"""Errors of the MediaMTX integration, as the RPC layer translates them."""

from __future__ import annotations


class StreamingDisabledError(Exception):
    """``mediamtx.enabled`` is false (-32030)."""


class MediaMTXUnavailableError(Exception):
    """MediaMTX is down, its breaker is open, or it failed the request (-32050)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class PathConflictError(MediaMTXUnavailableError):
    """The camera's path name is taken by a path camera-service did not create (-32050)."""


class StreamStateError(Exception):
    """The camera cannot do that now (-32020)."""

    def __init__(self, message: str, state: str, allowed: list[str]) -> None:
        super().__init__(message)
        self.message = message
        self.state = state
        self.allowed = allowed
