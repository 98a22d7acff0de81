"""Files over HTTP: `FileResponse` (Range, validators) and the static directory lookup.

`FileResponse` answers as aiohttp's did: `ETag` and `Last-Modified` from the file's stat,
`If-None-Match` / `If-Modified-Since` → 304, `If-Match` / `If-Unmodified-Since` → 412, one
byte range (`bytes=a-b`, `bytes=a-`, suffix `bytes=-n`; `If-Range` honoured) → 206, a range
that cannot be satisfied (or several ranges) → 416 with `Content-Range: bytes */size`.
The body goes out with `loop.sendfile` where the loop has it, else in chunks read in a worker
thread; either way the event loop never waits on the disk.

`resolve_static` maps a request path under a directory to a regular file there, refusing
`.`/`..` segments, encoded slashes, backslashes, NUL and any symbolic link on the way.
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
import stat
from collections.abc import Mapping
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path

from camera_service.transport.web.errors import (
    HTTPForbidden,
    HTTPNotFound,
    HTTPPreconditionFailed,
    HTTPRequestRangeNotSatisfiable,
)
from camera_service.transport.web.messages import Request, StreamResponse


class FileResponse(StreamResponse):
    def __init__(
        self, path: Path | str, *, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(status=status, headers=headers)
        self.path = Path(path)

    async def prepare(self, request: Request) -> None:
        if self.prepared:
            return
        loop = asyncio.get_running_loop()
        try:
            fd, info = await loop.run_in_executor(None, _open, self.path)
        except (FileNotFoundError, NotADirectoryError):
            raise HTTPNotFound() from None
        except IsADirectoryError:
            raise HTTPForbidden() from None
        try:
            await self._send(request, fd, info)
        finally:
            os.close(fd)

    async def _send(self, request: Request, fd: int, info: os.stat_result) -> None:
        size = info.st_size
        etag = f'"{info.st_mtime_ns:x}-{size:x}"'
        mtime = int(info.st_mtime)
        headers = self.headers
        headers["ETag"] = etag
        headers["Last-Modified"] = formatdate(mtime, usegmt=True)
        headers.setdefault("Content-Type", _content_type(self.path))
        headers["Accept-Ranges"] = "bytes"
        status = _precondition(request, etag, mtime)
        if status == 304:
            self.status, self.reason = 304, "Not Modified"
            for name in ("Content-Type", "Content-Length", "Accept-Ranges"):
                headers.pop(name, None)
            await super().prepare(request)
            return
        offset, count = 0, size
        wanted = request.headers.get("Range")
        if wanted is not None and _if_range_holds(request, etag, mtime):
            span = parse_range(wanted, size)
            if span is None:
                raise HTTPRequestRangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
            offset, count = span
            self.status, self.reason = 206, "Partial Content"
            headers["Content-Range"] = f"bytes {offset}-{offset + count - 1}/{size}"
        headers["Content-Length"] = str(count)
        await super().prepare(request)
        if count and request.method != "HEAD":
            await request.channel.send_file(fd, offset, count)


def _open(path: Path) -> tuple[int, os.stat_result]:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(str(path))
        if not stat.S_ISREG(info.st_mode):
            raise FileNotFoundError(str(path))
    except BaseException:
        os.close(fd)
        raise
    return fd, info


def _content_type(path: Path) -> str:
    kind, encoding = mimetypes.guess_type(path.name)
    if kind is None or encoding is not None:
        return "application/octet-stream"
    if kind.startswith("text/") or kind in ("application/javascript", "application/json"):
        return f"{kind}; charset=utf-8"
    return kind


def _http_time(value: str | None) -> int | None:
    if not value:
        return None
    try:
        return int(parsedate_to_datetime(value).timestamp())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _etags(value: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in value.split(",")}


def _precondition(request: Request, etag: str, mtime: int) -> int | None:
    """304 or 412 as the conditional headers ask, else None (RFC 9110 §13.2.2 order)."""
    headers = request.headers
    if_match = headers.get("If-Match")
    if if_match is not None:
        if if_match.strip() != "*" and etag not in _etags(if_match):
            raise HTTPPreconditionFailed()
    else:
        since = _http_time(headers.get("If-Unmodified-Since"))
        if since is not None and mtime > since:
            raise HTTPPreconditionFailed()
    if request.method not in ("GET", "HEAD"):
        return None
    none_match = headers.get("If-None-Match")
    if none_match is not None:
        if none_match.strip() == "*" or etag in _etags(none_match):
            return 304
        return None
    modified = _http_time(headers.get("If-Modified-Since"))
    if modified is not None and mtime <= modified:
        return 304
    return None


def _if_range_holds(request: Request, etag: str, mtime: int) -> bool:
    value = request.headers.get("If-Range")
    if value is None:
        return True
    value = value.strip()
    if value.startswith(('"', "W/")):
        return value == etag
    when = _http_time(value)
    return when is not None and mtime <= when


def parse_range(value: str, size: int) -> tuple[int, int] | None:
    """`(offset, count)` of one `bytes=` range within `size` bytes, or None (→ 416)."""
    unit, _, spec = value.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first.isdigit() or last.isdigit()):
        return None
    if (first and not first.isdigit()) or (last and not last.isdigit()):
        return None
    if not first:  # suffix: the last n bytes
        length = int(last)
        if length == 0 or size == 0:
            return None
        length = min(length, size)
        return size - length, length
    start = int(first)
    if start >= size:
        return None
    end = min(int(last), size - 1) if last else size - 1
    if end < start:
        return None
    return start, end - start + 1


def resolve_static(directory: Path, segments: list[str]) -> Path:
    """The regular file that decoded `segments` name under `directory` (no symlink followed)."""
    if not segments or any(
        seg in ("", ".", "..") or "/" in seg or "\\" in seg or "\0" in seg for seg in segments
    ):
        raise HTTPNotFound()
    path = directory
    for seg in segments:
        path = path / seg
        try:
            info = path.lstat()
        except (FileNotFoundError, NotADirectoryError):
            raise HTTPNotFound() from None
        except OSError:
            raise HTTPNotFound() from None
        if stat.S_ISLNK(info.st_mode):
            raise HTTPNotFound()
    if stat.S_ISDIR(info.st_mode):
        raise HTTPForbidden()
    if not stat.S_ISREG(info.st_mode):
        raise HTTPNotFound()
    return path
