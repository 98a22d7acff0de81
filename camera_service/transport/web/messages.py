"""Requests and responses of the HTTP server, named and shaped as aiohttp's were. No socket
I/O here: a response writes through the connection's `Channel`, a request body arrives
through its `Body`.

- `Request`: method, `path` (percent-decoded), `raw_path`, `query` (first value per name),
  case-insensitive `headers`, `remote`, `match_info`, and `read()` / `json()`, which take at
  most `limit` bytes (413 beyond) and raise `BodyTimeout` when the body is not complete
  within `http.body_timeout` of the head.
- `StreamResponse`: `prepare()` sends the head, `write()` a piece of the body and waits while
  the peer's window is full; `Response` carries its whole body; `json_response`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping, MutableMapping
from http import HTTPStatus
from typing import Any, Protocol, overload
from urllib.parse import parse_qsl, unquote

from camera_service.transport.web.errors import (
    BodyTimeout,
    HTTPBadRequest,
    HTTPRequestEntityTooLarge,
)

DEFAULT_MAX_BODY = 1024 * 1024  # what aiohttp's client_max_size was
MAX_QUERY_FIELDS = 64
BODY_HIGH_WATER = 64 * 1024  # buffered body bytes nobody reads yet: reading pauses


class Headers(MutableMapping[str, str]):
    """Case-insensitive header map that keeps the spelling it was given."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, str] | None = None) -> None:
        self._items: dict[str, tuple[str, str]] = {}
        if items:
            for name, value in items.items():
                self[name] = value

    @classmethod
    def adopt(cls, items: dict[str, tuple[str, str]]) -> Headers:
        """Headers over `items` (lower-case name → (name, value)), taken as they are."""
        headers = cls()
        headers._items = items
        return headers

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    # Native get / setdefault / pop: Mapping's versions go through KeyError.
    @overload  # type: ignore[override]
    def get(self, name: str) -> str | None: ...

    @overload
    def get(self, name: str, default: str) -> str: ...

    def get(self, name: str, default: str | None = None) -> str | None:
        item = self._items.get(name.lower())
        return default if item is None else item[1]

    def setdefault(self, name: str, default: str = "") -> str:
        item = self._items.setdefault(name.lower(), (name, default))
        return item[1]

    def pop(self, name: str, default: Any = None) -> Any:
        item = self._items.pop(name.lower(), None)
        return default if item is None else item[1]

    def __setitem__(self, name: str, value: str) -> None:
        self._items[name.lower()] = (name, value)

    def __delitem__(self, name: str) -> None:
        del self._items[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def pairs(self) -> list[tuple[str, str]]:
        return list(self._items.values())

    def __repr__(self) -> str:
        return f"Headers({dict(self._items.values())!r})"


class Channel(Protocol):
    """What a response needs from its connection."""

    def start_response(
        self, request: Request, response: StreamResponse, body: bytes | None = None
    ) -> None: ...

    async def send_body(self, data: bytes) -> None: ...

    async def end_response(self) -> None: ...

    async def drain(self) -> None: ...

    async def send_file(self, fd: int, offset: int, count: int) -> None: ...

    def want_body(self) -> None: ...

    def send_continue(self) -> None: ...


class Body:
    """A request body as it arrives: fed by the connection, taken by `Request.read()`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        self.loop = loop
        self.deadline = deadline  # loop time by which the body must be complete
        self.chunks: list[bytes] = []
        self.size = 0
        self.complete = False
        self.error: BaseException | None = None
        self.reading = False
        self._waiter: asyncio.Future[None] | None = None

    def feed(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        self._wake()

    def finish(self) -> None:
        self.complete = True
        self._wake()

    def fail(self, error: BaseException) -> None:
        if not self.complete:
            self.error = error
            self._wake()

    def wants_more(self) -> bool:
        """Whether the connection should go on reading body bytes now."""
        return self.reading or self.size < BODY_HIGH_WATER

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait(self) -> None:
        self._waiter = self.loop.create_future()
        try:
            async with asyncio.timeout_at(self.deadline):
                await self._waiter
        except TimeoutError:
            raise BodyTimeout() from None
        finally:
            self._waiter = None


class Request:
    def __init__(
        self,
        channel: Channel,
        method: str,
        target: str,
        headers: Headers,
        remote: str,
        body: Body,
        http_version: str = "1.1",
    ) -> None:
        """`target`: origin form (`/path?query`), as the connection checked it."""
        self.channel = channel
        self.method = method
        self.target = target
        raw_path, _, self.query_string = target.partition("?")
        self.raw_path = raw_path
        self.path = unquote(raw_path)
        self.headers = headers
        self.remote = remote
        self.version = http_version
        self.match_info: dict[str, str] = {}
        self._body = body
        self._read: bytes | None = None
        self._query: dict[str, str] | None = None

    @property
    def path_qs(self) -> str:
        """The request target as sent (for the access log, which redacts it)."""
        return self.target

    @property
    def query(self) -> Mapping[str, str]:
        if self._query is None:
            try:
                pairs = parse_qsl(
                    self.query_string, keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS
                )
            except ValueError:
                raise HTTPBadRequest(text="too many query fields") from None
            query: dict[str, str] = {}
            for name, value in pairs:
                query.setdefault(name, value)
            self._query = query
        return self._query

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("Content-Length")
        return int(value) if value is not None and value.isdigit() else None

    @property
    def body_exists(self) -> bool:
        return "Content-Length" in self.headers or "Transfer-Encoding" in self.headers

    async def read(self, limit: int = DEFAULT_MAX_BODY) -> bytes:
        """The whole body, at most `limit` bytes (413 over it, before reading more)."""
        if self._read is not None:
            return self._read
        declared = self.content_length
        if declared is not None and declared > limit:
            raise HTTPRequestEntityTooLarge(limit, declared)
        body = self._body
        if not body.complete and self.headers.get("Expect", "").lower() == "100-continue":
            self.channel.send_continue()
        body.reading = True
        try:
            while not body.complete:
                if body.error is not None:
                    raise body.error
                if body.size > limit:
                    raise HTTPRequestEntityTooLarge(limit, body.size)
                self.channel.want_body()
                await body.wait()
        finally:
            body.reading = False
        if body.size > limit:
            raise HTTPRequestEntityTooLarge(limit, body.size)
        self._read = b"".join(body.chunks)
        body.chunks = [self._read]
        return self._read

    async def json(self, limit: int = DEFAULT_MAX_BODY) -> Any:
        raw = await self.read(limit)
        try:
            return json.loads(raw)
        except ValueError:
            raise HTTPBadRequest(text="body is not JSON") from None


class StreamResponse:
    def __init__(
        self,
        *,
        status: int = 200,
        reason: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status = status
        self.reason = reason or _phrase(status)
        self.headers = Headers(headers)
        self.prepared = False
        self.finished = False
        self.broken = False  # a write did not complete: the connection cannot go on
        self._request: Request | None = None

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("Content-Length")
        return int(value) if value is not None else None

    async def prepare(self, request: Request) -> None:
        if self.prepared:
            return
        self._request = request
        request.channel.start_response(request, self)
        self.prepared = True

    async def write(self, data: bytes) -> None:
        assert self._request is not None, "write() before prepare()"
        if not data:
            return
        self.broken = True  # until the write and its drain complete
        await self._request.channel.send_body(data)
        self.broken = False

    async def write_eof(self) -> None:
        if self.finished:
            return
        assert self._request is not None, "write_eof() before prepare()"
        self.finished = True
        await self._request.channel.end_response()


class Response(StreamResponse):
    def __init__(
        self,
        *,
        body: bytes | None = None,
        text: str | None = None,
        status: int = 200,
        reason: str | None = None,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> None:
        super().__init__(status=status, reason=reason, headers=headers)
        if text is not None:
            body = text.encode()
            self.headers.setdefault("Content-Type", content_type or "text/plain; charset=utf-8")
        elif content_type is not None:
            self.headers.setdefault("Content-Type", content_type)
        self.body = body or b""
        self.headers["Content-Length"] = str(len(self.body))

    async def prepare(self, request: Request) -> None:
        """Sends the whole response (head and body in one write)."""
        if self.prepared:
            return
        self._request = request
        request.channel.start_response(request, self, self.body)
        self.prepared = self.finished = True
        await request.channel.drain()

    async def write_eof(self) -> None:
        if self.finished:
            return
        await super().write_eof()


def json_response(
    data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        text=json.dumps(data),
        status=status,
        headers=headers,
        content_type="application/json; charset=utf-8",
    )


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
