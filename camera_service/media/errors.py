"""Errors the media layer raises on purpose (mapped to RPC error codes by the methods)."""

from __future__ import annotations


class MediaServiceError(Exception):
    """Base of every error the media layer raises on purpose."""

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail if detail is not None else message


class MediaError(MediaServiceError):
    """FFmpeg (or another child) failed or could not be started (→ dependency failed)."""


class DeviceBusy(MediaServiceError):
    """A single-reader device is held by another process (→ invalid state)."""


class AlreadyRecording(MediaServiceError):
    """The camera is already being recorded (→ invalid state)."""


class NotRecording(MediaServiceError):
    """The camera is not being recorded (→ invalid state)."""


class InvalidTarget(MediaServiceError):
    """The requested output filename is unsafe or already exists (→ invalid params)."""
