"""The h11 HTTP server of port 8003 (camera_service.transport.web), over real sockets.

Each test runs a `Server` with its own router on 127.0.0.1 port 0 and talks to it with raw
bytes; answers are parsed with h11's client side, so framing is checked as a client sees it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import h11
import pytest

from camera_service.transport import web
from camera_service.transport.admission import AddressCap, WaitingHeads
from camera_service.transport.http import security_headers
from camera_service.transport.web.server import Server
from tests.support.waiting import wait_until


@asynccontextmanager
async def serving(
    router: web.Router, *, header_timeout: float = 5.0, body_timeout: float = 5.0
) -> AsyncIterator[Server]:
    server = Server(
        router,
        cap=AddressCap(16, 64),
        waiting=WaitingHeads(),
        header_timeout=header_timeout,
        body_timeout=body_timeout,
        on_refused=lambda address, reason: None,
        on_prepare=security_headers,
        access_log=logging.getLogger("test.http.access"),
    )
    await server.start("127.0.0.1", 0)
    try:
        yield server
    finally:
        await server.stop(1.0)


class Answer:
    def __init__(self, response: h11.Response, body: bytes) -> None:
        self.status = response.status_code
        self.headers = {k.decode().lower(): v.decode() for k, v in response.headers}
        self.body = body


class RawClient:
    """One TCP connection; `answers()` parses responses as they come, in order."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self._pending = b""

    @classmethod
    async def open(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def answer(self, method: bytes = b"GET", timeout: float = 5.0) -> Answer:
        conn = h11.Connection(h11.CLIENT)
        conn.send(h11.Request(method=method, target="/", headers=[("Host", "t")]))
        conn.send(h11.EndOfMessage())
        if self._pending:
            conn.receive_data(self._pending)  # (b"" would mean end of stream to h11)
        head: h11.Response | None = None
        body = b""
        async with asyncio.timeout(timeout):
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await self.reader.read(65536)
                    conn.receive_data(data)
                    continue
                if isinstance(event, h11.Response):
                    head = event
                elif isinstance(event, h11.Data):
                    body += bytes(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    break
        self._pending = conn.trailing_data[0]
        assert head is not None
        return Answer(head, body)

    async def closed_by_server(self, timeout: float = 5.0) -> bool:
        async with asyncio.timeout(timeout):
            while await self.reader.read(65536):
                pass
        return True

    def close(self) -> None:
        self.writer.close()


def get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n".encode()


def echo_router(seen: list[bytes] | None = None) -> web.Router:
    router = web.Router()

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=f"hello {request.match_info.get('name', '')}")

    async def echo(request: web.Request) -> web.Response:
        body = await request.read(1024)
        if seen is not None:
            seen.append(body)
        return web.Response(body=body)

    router.add_get("/hello", hello)
    router.add_get("/hello/{name}", hello)
    router.add_post("/echo", echo)
    return router


# -- framing and smuggling ------------------------------------------------------------------


async def test_content_length_with_transfer_encoding_is_refused() -> None:
    seen: list[bytes] = []
    async with serving(echo_router(seen)) as server:
        client = await RawClient.open(server.port)
        client.send(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        answer = await client.answer()
        assert answer.status == 400
        assert answer.headers["connection"] == "close"
        assert await client.closed_by_server()  # the smuggled GET is never answered
        assert seen == []


async def test_two_different_content_lengths_are_refused() -> None:
    seen: list[bytes] = []
    async with serving(echo_router(seen)) as server:
        client = await RawClient.open(server.port)
        client.send(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\nabc"
        )
        answer = await client.answer()
        assert answer.status == 400
        assert answer.headers["x-content-type-options"] == "nosniff"  # error answers too
        assert await client.closed_by_server()
        assert seen == []


@pytest.mark.parametrize("whole", [True, False])
async def test_oversized_head_gets_431_and_the_connection_closes(whole: bool) -> None:
    """Whole in one read, or still arriving (h11's own bound on an incomplete head)."""
    async with serving(echo_router()) as server:
        client = await RawClient.open(server.port)
        head = get("/hello", "X-Big: " + "a" * 20000 + "\r\n")
        client.send(head if whole else head[:-4])
        answer = await client.answer()
        assert answer.status == 431
        assert await client.closed_by_server()


async def test_oversized_declared_body_gets_413_before_any_of_it_is_read() -> None:
    seen: list[bytes] = []
    async with serving(echo_router(seen)) as server:
        client = await RawClient.open(server.port)
        # Only the head is sent: the answer must not wait for the 2 MiB announced.
        client.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2097152\r\n\r\n")
        answer = await client.answer()
        assert answer.status == 413
        assert answer.headers["connection"] == "close"
        assert await client.closed_by_server()
        assert seen == []


async def test_oversized_chunked_body_gets_413() -> None:
    seen: list[bytes] = []
    async with serving(echo_router(seen)) as server:
        client = await RawClient.open(server.port)
        chunk = b"x" * 2048
        client.send(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            + f"{len(chunk):x}\r\n".encode()
            + chunk
            + b"\r\n"
        )
        answer = await client.answer()
        assert answer.status == 413
        assert seen == []


async def test_body_that_does_not_arrive_gets_408() -> None:
    async with serving(echo_router(), body_timeout=0.3) as server:
        client = await RawClient.open(server.port)
        client.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        answer = await client.answer()
        assert answer.status == 408
        assert await client.closed_by_server()


async def test_bad_chunk_mid_body_gets_400() -> None:
    async with serving(echo_router()) as server:
        client = await RawClient.open(server.port)
        client.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
        answer = await client.answer()
        assert answer.status == 400
        assert await client.closed_by_server()


# -- keep-alive, pipelining, HEAD -----------------------------------------------------------


async def test_pipelined_requests_are_answered_one_at_a_time_in_order() -> None:
    router = web.Router()
    calls: list[str] = []
    entered = asyncio.Event()
    gate = asyncio.Event()

    async def first(request: web.Request) -> web.Response:
        calls.append("first")
        entered.set()
        await asyncio.wait_for(gate.wait(), 5)
        return web.Response(text="first")

    async def other(request: web.Request) -> web.Response:
        calls.append(request.match_info["name"])
        return web.Response(text=request.match_info["name"])

    router.add_get("/first", first)
    router.add_get("/n/{name}", other)
    async with serving(router) as server:
        client = await RawClient.open(server.port)
        client.send(get("/first") + get("/n/second") + get("/n/third"))
        await asyncio.wait_for(entered.wait(), 5)
        assert calls == ["first"]  # the next ones wait until this one is answered
        gate.set()
        bodies = [(await client.answer()).body for _ in range(3)]
        assert bodies == [b"first", b"second", b"third"]
        assert calls == ["first", "second", "third"]


async def test_head_answers_like_get_without_a_body() -> None:
    async with serving(echo_router()) as server:
        client = await RawClient.open(server.port)
        client.send(b"HEAD /hello/x HTTP/1.1\r\nHost: t\r\n\r\n" + get("/hello/x"))
        head = await client.answer(b"HEAD")
        full = await client.answer()
        assert head.status == full.status == 200
        assert head.body == b"" and full.body == b"hello x"
        assert head.headers["content-length"] == full.headers["content-length"] == "7"


async def test_unknown_path_is_404_and_wrong_method_405_with_allow() -> None:
    async with serving(echo_router()) as server:
        client = await RawClient.open(server.port)
        client.send(get("/nope") + b"POST /hello HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
        assert (await client.answer()).status == 404
        answer = await client.answer()
        assert answer.status == 405
        assert answer.headers["allow"] == "GET,HEAD"


async def test_idle_keep_alive_connection_is_closed_after_the_header_timeout() -> None:
    async with serving(echo_router(), header_timeout=0.3) as server:
        client = await RawClient.open(server.port)
        client.send(get("/hello"))
        assert (await client.answer()).status == 200
        assert await client.closed_by_server(5)
        await wait_until(lambda: server.cap.open == 0, 5, "cap released")


async def test_connection_close_from_the_client_is_honoured() -> None:
    async with serving(echo_router()) as server:
        client = await RawClient.open(server.port)
        client.send(get("/hello", "Connection: close\r\n"))
        answer = await client.answer()
        assert answer.status == 200 and answer.headers["connection"] == "close"
        assert await client.closed_by_server()


async def test_http10_client_gets_its_answer_and_the_connection_closes() -> None:
    async with serving(echo_router()) as server:
        client = await RawClient.open(server.port)
        client.send(b"GET /hello/old HTTP/1.0\r\n\r\n")
        data = await asyncio.wait_for(client.reader.read(), 5)  # to EOF
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Connection: close\r\n" in data and data.endswith(b"\r\n\r\nhello old")


async def test_expect_100_continue_is_answered_before_the_body() -> None:
    async with serving(echo_router()) as server:
        client = await RawClient.open(server.port)
        client.send(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = await asyncio.wait_for(client.reader.readuntil(b"\r\n\r\n"), 5)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        client.send(b"ping")
        answer = await client.answer()
        assert answer.status == 200 and answer.body == b"ping"


async def test_stream_without_length_is_chunked_and_keeps_the_connection() -> None:
    router = web.Router()

    async def parts(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        for piece in (b"one ", b"two ", b"three"):
            await response.write(piece)
        return response

    router.add_get("/parts", parts)
    async with serving(router) as server:
        client = await RawClient.open(server.port)
        client.send(get("/parts") + get("/parts"))
        first, second = await client.answer(), await client.answer()
    assert first.headers["transfer-encoding"] == "chunked"
    assert first.body == second.body == b"one two three"


# -- failures -------------------------------------------------------------------------------


async def test_handler_exception_is_500_without_details_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    router = web.Router()

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("secret detail")

    router.add_get("/broken", broken)
    router.add_get("/hello", echo_router().routes[0].handler)  # type: ignore[union-attr]
    async with serving(router) as server:
        client = await RawClient.open(server.port)
        client.send(get("/broken") + get("/hello"))
        answer = await client.answer()
        assert answer.status == 500
        assert b"secret" not in answer.body and b"Traceback" not in answer.body
        assert (await client.answer()).status == 200  # the connection goes on
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(failures) == 1 and failures[0].exc_info is not None


async def test_client_leaving_mid_stream_ends_the_handler_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    router = web.Router()
    ended = asyncio.Event()
    outcome: list[str] = []

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await response.prepare(request)
        try:
            while True:
                await response.write(b"x" * 65536)
        except ConnectionResetError:
            outcome.append("reset")
        finally:
            ended.set()
        return response

    router.add_get("/stream", stream)
    async with serving(router) as server:
        client = await RawClient.open(server.port)
        client.send(get("/stream"))
        assert await client.reader.readexactly(100_000)
        client.writer.transport.abort()
        await asyncio.wait_for(ended.wait(), 10)
        await wait_until(lambda: not server.connections, 5, "connection gone")
        await wait_until(lambda: server.cap.open == 0, 5, "cap released")
    assert outcome == ["reset"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_stop_gives_running_requests_the_timeout_then_aborts() -> None:
    router = web.Router()
    entered = asyncio.Event()
    cancelled = asyncio.Event()

    async def forever(request: web.Request) -> web.Response:
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return web.Response()

    router.add_get("/forever", forever)
    router.add_get("/hello", echo_router().routes[0].handler)  # type: ignore[union-attr]
    server = Server(
        router,
        cap=AddressCap(16, 64),
        waiting=WaitingHeads(),
        header_timeout=5,
        body_timeout=5,
        on_refused=lambda address, reason: None,
        on_prepare=security_headers,
        access_log=logging.getLogger("test.http.access"),
    )
    await server.start("127.0.0.1", 0)
    busy = await RawClient.open(server.port)
    idle = await RawClient.open(server.port)
    busy.send(get("/forever"))
    idle.send(get("/hello"))
    assert (await idle.answer()).status == 200
    await asyncio.wait_for(entered.wait(), 5)
    await asyncio.wait_for(server.stop(0.3), 5)
    assert cancelled.is_set()
    assert await idle.closed_by_server() and await busy.closed_by_server()
    assert not server.connections


# -- files and the static route -------------------------------------------------------------


def file_router(path: Path) -> web.Router:
    router = web.Router()

    async def serve(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(path)

    router.add_get("/file", serve)
    return router


BLOB = os.urandom(300_000)


@pytest.fixture
def blob(tmp_path: Path) -> Path:
    path = tmp_path / "blob.bin"
    path.write_bytes(BLOB)
    return path


@pytest.mark.parametrize(
    ("value", "status", "span"),
    [
        ("bytes=0-99", 206, (0, 100)),
        ("bytes=299990-", 206, (299990, 10)),
        ("bytes=-10", 206, (299990, 10)),
        ("bytes=-999999", 206, (0, 300_000)),
        ("bytes=100-999999", 206, (100, 299_900)),
        ("bytes=300000-", 416, None),
        ("bytes=-0", 416, None),
        ("bytes=5-1", 416, None),
        ("bytes=0-1,5-6", 416, None),
        ("items=0-1", 416, None),
    ],
)
async def test_file_ranges(
    blob: Path, value: str, status: int, span: tuple[int, int] | None
) -> None:
    data = BLOB
    async with serving(file_router(blob)) as server:
        client = await RawClient.open(server.port)
        client.send(get("/file", f"Range: {value}\r\n"))
        answer = await client.answer()
    assert answer.status == status
    if span is None:
        assert answer.headers["content-range"] == "bytes */300000"
    else:
        start, count = span
        assert answer.body == data[start : start + count]
        assert answer.headers["content-range"] == f"bytes {start}-{start + count - 1}/300000"


async def test_file_validators_and_head(blob: Path) -> None:
    async with serving(file_router(blob)) as server:
        client = await RawClient.open(server.port)
        client.send(get("/file"))
        full = await client.answer()
        assert full.body == BLOB
        assert full.headers["content-type"] == "application/octet-stream"
        assert full.headers["accept-ranges"] == "bytes"
        etag, modified = full.headers["etag"], full.headers["last-modified"]
        client.send(
            get("/file", f"If-None-Match: {etag}\r\n")
            + get("/file", f"If-Modified-Since: {modified}\r\n")
            + get("/file", 'If-Range: "other"\r\nRange: bytes=0-9\r\n')
            + b"HEAD /file HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        assert (await client.answer()).status == 304
        assert (await client.answer()).status == 304
        stale_range = await client.answer()
        assert stale_range.status == 200 and len(stale_range.body) == 300_000
        head = await client.answer(b"HEAD")
        assert head.status == 200 and head.body == b""
        assert head.headers["content-length"] == "300000"


async def test_file_of_several_sendfile_pieces_goes_out_whole_and_by_range(
    tmp_path: Path,
) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    async with serving(file_router(path)) as server:
        client = await RawClient.open(server.port)
        client.send(get("/file") + get("/file", "Range: bytes=1500000-\r\n"))
        whole, tail = await client.answer(), await client.answer()
    assert whole.body == data
    assert tail.status == 206 and tail.body == data[1500000:]


def test_file_body_goes_out_on_uvloop_too(blob: Path) -> None:
    """uvloop has no loop.sendfile: the body is then read in a worker thread."""
    uvloop = pytest.importorskip("uvloop")

    async def fetch() -> bytes:
        async with serving(file_router(blob)) as server:
            client = await RawClient.open(server.port)
            client.send(get("/file"))
            return (await client.answer()).body

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(fetch()) == BLOB


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    (root / "sub").mkdir(parents=True)
    (root / "index.html").write_text("<p>hi</p>")
    (root / "app.js").write_text("let x = 1;")
    (root / "sub" / "deep.css").write_text("p {}")
    (tmp_path / "secret.txt").write_text("secret")
    (root / "link.txt").symlink_to(tmp_path / "secret.txt")
    (root / "inner.txt").symlink_to(root / "index.html")
    (root / "dirlink").symlink_to(tmp_path)
    return root


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/app.js", 200),
        ("/sub/deep.css", 200),
        ("/sub", 403),
        ("/../secret.txt", 404),
        ("/%2e%2e/secret.txt", 404),
        ("/..%2fsecret.txt", 404),
        ("/sub/..%2f..%2fsecret.txt", 404),
        ("/..%5csecret.txt", 404),
        ("/app.js%00", 404),
        ("/link.txt", 404),
        ("/inner.txt", 404),
        ("/dirlink/secret.txt", 404),
        ("/missing.js", 404),
    ],
)
async def test_static_route_serves_files_and_refuses_traversal(
    site: Path, path: str, status: int
) -> None:
    router = web.Router()
    router.add_static("/", site, show_index=False, follow_symlinks=False)
    async with serving(router) as server:
        client = await RawClient.open(server.port)
        client.send(get(path))
        answer = await client.answer()
    assert answer.status == status, path
    assert b"secret" not in answer.body
    if status == 200:
        assert answer.body == (site / path[1:]).read_bytes()
    if path == "/app.js":
        assert answer.headers["content-type"].startswith(
            ("text/javascript", "application/javascript")
        )


async def test_static_route_answers_other_methods_405(site: Path) -> None:
    router = web.Router()
    router.add_static("/", site)
    async with serving(router) as server:
        client = await RawClient.open(server.port)
        client.send(b"POST /app.js HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
        answer = await client.answer()
    assert answer.status == 405 and answer.headers["allow"] == "GET,HEAD"
