"""Errors of the file store (names, lookup, deletion, probing); `StorageError` is their base."""

from __future__ import annotations


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
