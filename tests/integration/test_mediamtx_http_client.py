"""The h11 HTTP client of the MediaMTX API client against scripted raw HTTP servers.

Every server here is a real socket on 127.0.0.1 (a free port) speaking bytes the test
writes: well-formed keep-alive and chunked answers, and the ways a server goes wrong.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from camera_service.mediamtx.client import MediaMTXClient, MediaMTXUnavailable
from camera_service.mediamtx.http_client import (
    MAX_HEAD_BYTES,
    BodyTooLarge,
    ClientClosed,
    ConnectFailed,
    ConnectionLost,
    HTTPClient,
    ProtocolViolation,
    RequestTimeout,
)
from camera_service.mediamtx.models import PathConf
from tests.support.mosquitto import make_tls_files
from tests.support.raw_http_server import WAIT, RawConnection, RawHTTPServer, keep_alive

CHUNKED_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def wait_closed(*conns: RawConnection) -> None:
    """Until the client has closed each of these server-side connections."""
    async with asyncio.timeout(WAIT):
        for conn in conns:
            await conn.peer_closed.wait()


# -- framing -----------------------------------------------------------------------------


async def test_chunked_body_is_joined_and_the_connection_reused() -> None:
    """Go's net/http sends larger JSON chunked (4 KiB chunks); both answers share one
    connection."""
    payload = json.dumps({"items": [{"name": f"cam{i}", "ready": True} for i in range(20000)]})
    data = payload.encode()

    async def handler(conn: RawConnection) -> None:
        while await conn.read_request() is not None:
            conn.write(CHUNKED_HEAD)
            for start in range(0, len(data), 4096):
                conn.write(chunk(data[start : start + 4096]))
                await conn.writer.drain()
            conn.write(b"0\r\n\r\n")

    async with RawHTTPServer(handler) as server, HTTPClient(server.url) as client:
        assert len(data) > 512 * 1024
        for _ in range(2):
            response = await client.request("GET", "/v3/paths/list", timeout=WAIT)
            assert (response.status, response.body) == (200, data)
            assert response.header("Transfer-Encoding") == "chunked"
        assert len(server.connections) == 1
        assert client.idle_connections == 1


async def test_content_length_answers_reuse_one_connection() -> None:
    async with (
        RawHTTPServer(keep_alive(b'{"ok": true}')) as server,
        HTTPClient(server.url) as client,
    ):
        for i in range(5):
            response = await client.request("GET", f"/v3/info?i={i}", timeout=WAIT)
            assert response.body == b'{"ok": true}'
        assert [r.target for r in server.requests] == [f"/v3/info?i={i}" for i in range(5)]
        assert len(server.connections) == 1


async def test_close_delimited_http10_body_is_read_to_the_end() -> None:
    async def handler(conn: RawConnection) -> None:
        await conn.read_request()
        conn.write(b'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{"old": 1}')

    async with RawHTTPServer(handler) as server, HTTPClient(server.url) as client:
        response = await client.request("GET", "/", timeout=WAIT)
        assert response.body == b'{"old": 1}'
        assert client.open_connections == 0


async def test_connection_close_from_the_server_is_honoured() -> None:
    async def handler(conn: RawConnection) -> None:
        await conn.read_request()
        await conn.respond(b"{}", headers="Connection: close\r\n")
        await conn.wait_peer_closed()

    async with RawHTTPServer(handler) as server, HTTPClient(server.url) as client:
        await client.request("GET", "/a", timeout=WAIT)
        assert (client.idle_connections, client.open_connections) == (0, 0)
        await wait_closed(server.connections[0])  # the client closed it, not the server
        await client.request("GET", "/b", timeout=WAIT)
        assert len(server.connections) == 2


# -- limits --------------------------------------------------------------------------------


async def test_oversized_chunked_body_is_refused_without_reading_it_all() -> None:
    piece = b"x" * 65536
    total = 1024 * len(piece)  # 64 MiB offered; the limit is 256 KiB
    sent = 0
    outcome: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def handler(conn: RawConnection) -> None:
        nonlocal sent
        await conn.read_request()
        try:
            conn.write(CHUNKED_HEAD)
            while sent < total:
                conn.write(chunk(piece))
                await conn.writer.drain()
                sent += len(piece)
            conn.write(b"0\r\n\r\n")
            await conn.writer.drain()
        except ConnectionError:
            outcome.set_result("reset")
        else:
            outcome.set_result("sent everything")

    async with (
        RawHTTPServer(handler) as server,
        HTTPClient(server.url, max_body=256 * 1024) as client,
    ):
        with pytest.raises(BodyTooLarge, match="over the limit of 262144 bytes"):
            await client.request("GET", "/v3/paths/list", timeout=WAIT)
        assert client.open_connections == 0
        assert await asyncio.wait_for(outcome, WAIT) == "reset"
        assert sent < total // 4


async def test_oversized_content_length_is_refused_before_the_body() -> None:
    async def handler(conn: RawConnection) -> None:
        await conn.read_request()
        conn.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n")  # no body follows
        await conn.wait_peer_closed()

    async with RawHTTPServer(handler) as server, HTTPClient(server.url) as client:
        with pytest.raises(BodyTooLarge, match="1000000000 bytes is over the limit"):
            await client.request("GET", "/", timeout=WAIT)
        await wait_closed(server.connections[0])


async def test_bodiless_answers_may_announce_any_length() -> None:
    """HEAD and 304 answers carry the length of a body they do not send."""

    async def handler(conn: RawConnection) -> None:
        while await conn.read_request() is not None:
            status = "304 Not Modified" if conn.requests[-1].method == "GET" else "200 OK"
            conn.write(f"HTTP/1.1 {status}\r\nContent-Length: 1000000000\r\n\r\n".encode())

    async with RawHTTPServer(handler) as server, HTTPClient(server.url) as client:
        for method, status in (("HEAD", 200), ("GET", 304), ("HEAD", 200)):
            response = await client.request(method, "/", timeout=WAIT)
            assert (response.status, response.body) == (status, b"")
        assert len(server.connections) == 1


async def test_response_head_too_large() -> None:
    async def handler(conn: RawConnection) -> None:
        await conn.read_request()
        conn.write(b"HTTP/1.1 200 OK\r\nX-Filler: " + b"a" * (4 * MAX_HEAD_BYTES))  # never ends
        await conn.wait_peer_closed()

    async with RawHTTPServer(handler) as server, HTTPClient(server.url) as client:
        with pytest.raises(ProtocolViolation, match=f"head larger than {MAX_HEAD_BYTES} bytes"):
            await client.request("GET", "/", timeout=WAIT)
        await wait_closed(server.connections[0])


async def test_pool_never_holds_more_than_its_bound() -> None:
    release = asyncio.Event()

    async def handler(conn: RawConnection) -> None:
        while await conn.read_request() is not None:
            await release.wait()
            await conn.respond()

    async with RawHTTPServer(handler) as server, HTTPClient(server.url, max_idle=2) as client:
        burst = [
            asyncio.create_task(client.request("GET", f"/{i}", timeout=WAIT)) for i in range(5)
        ]
        await server.wait_requests(5)
        assert client.open_connections == 5
        release.set()
        await asyncio.gather(*burst)
        assert (client.idle_connections, client.open_connections) == (2, 2)
        # the three beyond the bound were closed by the client
        closing = [asyncio.create_task(c.peer_closed.wait()) for c in server.connections]
        done: set[asyncio.Task[bool]] = set()
        async with asyncio.timeout(WAIT):
            while len(done) < 3:
                finished, _ = await asyncio.wait(
                    set(closing) - done, return_when=asyncio.FIRST_COMPLETED
                )
                done |= finished
        for task in closing:
            task.cancel()
        for i in range(10):
            await client.request("GET", f"/again/{i}", timeout=WAIT)
            assert client.idle_connections <= 2
        assert len(server.connections) == 5


# -- a kept-alive connection the server closes ----------------------------------------------


async def closing_handler(conn: RawConnection) -> None:
    """Connection 0 answers once, then reads the next request and closes unanswered (the
    race of a server's idle timeout with a request); later connections answer everything."""
    if conn.index > 0:
        await keep_alive(b'{"n": 2}')(conn)
        return
    await conn.read_request()
    await conn.respond(b'{"n": 1}')
    await conn.read_request()  # read, never answered: the connection closes


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_idempotent_request_on_a_closed_kept_alive_connection_is_retried_once(
    method: str,
) -> None:
    async with RawHTTPServer(closing_handler) as server, HTTPClient(server.url) as client:
        assert (await client.request("GET", "/first", timeout=WAIT)).body == b'{"n": 1}'
        response = await client.request(method, "/second", body=b"{}", timeout=WAIT)
        assert response.body == b'{"n": 2}'
        assert len(server.connections) == 2
        assert [(r.method, r.target) for r in server.requests] == [
            ("GET", "/first"),
            (method, "/second"),
            (method, "/second"),
        ]


@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_post_already_sent_on_a_closed_connection_is_not_retried(method: str) -> None:
    async with RawHTTPServer(closing_handler) as server, HTTPClient(server.url) as client:
        await client.request("GET", "/first", timeout=WAIT)
        with pytest.raises(ConnectionLost, match="closed the connection") as info:
            await client.request(method, "/v3/config/paths/add/x", body=b"{}", timeout=WAIT)
        assert (info.value.sent, info.value.received) == (True, False)
        assert len(server.connections) == 1
        assert [r.method for r in server.requests] == ["GET", method]


async def test_idle_connection_closed_by_the_server_leaves_the_pool() -> None:
    """The server's idle timeout: the pooled connection goes, a POST opens a new one."""

    async def handler(conn: RawConnection) -> None:
        await conn.read_request()
        await conn.respond()
        if conn.index > 0:
            await keep_alive()(conn)

    async with RawHTTPServer(handler) as server, HTTPClient(server.url) as client:
        await client.request("GET", "/", timeout=WAIT)
        [pooled] = client._idle
        await asyncio.wait_for(pooled.closed, WAIT)
        assert (client.idle_connections, client.open_connections) == (0, 0)
        await client.request("POST", "/v3/config/paths/add/x", body=b"{}", timeout=WAIT)
        assert len(server.connections) == 2


async def test_partial_response_is_not_retried() -> None:
    async def handler(conn: RawConnection) -> None:
        await conn.read_request()
        conn.write(b'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{"a')

    async with RawHTTPServer(handler) as server, HTTPClient(server.url) as client:
        with pytest.raises(ConnectionLost, match="before the response was complete") as info:
            await client.request("GET", "/", timeout=WAIT)
        assert info.value.received
        assert len(server.connections) == 1


# -- deadlines and broken servers ------------------------------------------------------------


async def test_server_that_never_answers_hits_the_deadline() -> None:
    async def handler(conn: RawConnection) -> None:
        await conn.read_request()
        await conn.wait_peer_closed()

    async with RawHTTPServer(handler) as server, HTTPClient(server.url) as client:
        with pytest.raises(RequestTimeout, match=r"after 0\.2 s waiting for the response head"):
            await client.request("GET", "/", timeout=0.2)
        await wait_closed(server.connections[0])
        assert client.open_connections == 0


async def test_body_that_stalls_hits_the_deadline() -> None:
    async def handler(conn: RawConnection) -> None:
        await conn.read_request()
        conn.write(b'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{"a')
        await conn.wait_peer_closed()

    async with RawHTTPServer(handler) as server, HTTPClient(server.url) as client:
        with pytest.raises(RequestTimeout, match="reading the response body"):
            await client.request("GET", "/", timeout=0.2)
        await wait_closed(server.connections[0])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_connection_refused() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with HTTPClient(url) as client:
        with pytest.raises(ConnectFailed, match=r"cannot connect to 127\.0\.0\.1"):
            await client.request("GET", "/v3/info", timeout=WAIT)
    async with MediaMTXClient(url) as mtx:
        with pytest.raises(MediaMTXUnavailable, match="GET /v3/info: ConnectFailed"):
            await mtx.info()


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
    ],
)
async def test_malformed_response_head(answer: bytes) -> None:
    async def handler(conn: RawConnection) -> None:
        await conn.read_request()
        conn.write(answer)
        await conn.wait_peer_closed()

    async with RawHTTPServer(handler) as server, HTTPClient(server.url) as client:
        with pytest.raises(ProtocolViolation, match="malformed response"):
            await client.request("GET", "/", timeout=WAIT)
        await wait_closed(server.connections[0])
    async with RawHTTPServer(handler) as server, MediaMTXClient(server.url) as mtx:
        with pytest.raises(MediaMTXUnavailable, match="ProtocolViolation"):
            await mtx.info()


async def test_closed_client_refuses_requests() -> None:
    async with RawHTTPServer(keep_alive()) as server:
        client = HTTPClient(server.url)
        await client.request("GET", "/", timeout=WAIT)
        await client.close()
        await client.close()
        await wait_closed(server.connections[0])
        with pytest.raises(ClientClosed):
            await client.request("GET", "/", timeout=WAIT)


async def test_https(tmp_path: Path) -> None:
    """TLS with the certificate checked: trusted CA given → answers; default trust → the
    handshake fails as ConnectFailed."""
    ca, cert, key = make_tls_files(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    async with RawHTTPServer(keep_alive(b'{"tls": 1}'), tls=server_tls) as server:
        trusting = ssl.create_default_context(cafile=str(ca))
        async with HTTPClient(server.url, ssl_context=trusting) as client:
            for _ in range(2):
                assert (await client.request("GET", "/", timeout=WAIT)).body == b'{"tls": 1}'
            assert len(server.connections) == 1
        async with HTTPClient(server.url) as client:
            with pytest.raises(ConnectFailed, match="CERTIFICATE_VERIFY_FAILED"):
                await client.request("GET", "/", timeout=WAIT)


def test_only_http_urls() -> None:
    with pytest.raises(ValueError, match="unsupported URL scheme 'ftp'"):
        HTTPClient("ftp://127.0.0.1:21")
    with pytest.raises(ValueError, match="no host"):
        HTTPClient("http:///v3")


# -- MediaMTXClient on top -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "unexpected response"),
        (b'{"version": 1}', "unexpected response"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
async def test_bad_json_is_unavailable(body: bytes, needle: str) -> None:
    async with RawHTTPServer(keep_alive(body)) as server, MediaMTXClient(server.url) as mtx:
        with pytest.raises(MediaMTXUnavailable, match=needle):
            await mtx.info()


async def test_global_config_not_json_is_unavailable() -> None:
    async with RawHTTPServer(keep_alive(b"[1, 2")) as server, MediaMTXClient(server.url) as mtx:
        with pytest.raises(MediaMTXUnavailable, match="not JSON"):
            await mtx.global_config()


async def test_requests_as_sent_to_mediamtx() -> None:
    """Host, Accept, Basic auth, JSON body with its type and length, the URL's path prefix
    and query parameters; all on one connection."""
    async with RawHTTPServer(keep_alive()) as server:
        base = f"{server.url}/mtx/"
        async with MediaMTXClient(base, auth=("camera-service", "s3cret")) as mtx:
            await mtx.kick_session("hls", "abc")
            await mtx.list_config_paths(page=2, items_per_page=5)
            await mtx.patch_config_path("cam 1/main", conf := PathConf(max_readers=3, record=False))
        basic = base64.b64encode(b"camera-service:s3cret").decode()
        kick, listing, patch = server.requests
        for request in server.requests:
            assert request.headers["host"] == f"127.0.0.1:{server.port}"
            assert request.headers["accept"] == "application/json"
            assert request.headers["authorization"] == f"Basic {basic}"
        assert (kick.method, kick.target, kick.headers["content-length"], kick.body) == (
            "POST",
            "/mtx/v3/hlssessions/kick/abc",
            "0",
            b"",
        )
        assert (listing.method, listing.target) == (
            "GET",
            "/mtx/v3/config/paths/list?page=2&itemsPerPage=5",
        )
        assert "content-length" not in listing.headers
        assert (patch.method, patch.target) == ("PATCH", "/mtx/v3/config/paths/patch/cam%201/main")
        assert patch.headers["content-type"] == "application/json"
        assert json.loads(patch.body) == conf.to_body()
        assert len(server.connections) == 1


def test_mediamtx_package_does_not_load_aiohttp() -> None:
    """Every module of camera_service.mediamtx imports without aiohttp (its ~10 MB)."""
    script = (
        "import pkgutil, importlib, sys, camera_service.mediamtx as p\n"
        "for m in pkgutil.iter_modules(p.__path__):\n"
        "    importlib.import_module(f'camera_service.mediamtx.{m.name}')\n"
        "print(sorted(n for n in sys.modules if n.split('.')[0] == 'aiohttp'))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert proc.stdout.strip() == "[]"


def test_http_client_loads_with_the_first_request() -> None:
    """A daemon with MediaMTX off builds a MediaMTXClient but never loads the HTTP client."""
    script = (
        "import sys\n"
        "from camera_service.mediamtx.client import MediaMTXClient\n"
        "MediaMTXClient('http://127.0.0.1:9997')\n"
        "print(sorted(n for n in sys.modules if n.startswith('camera_service.mediamtx.http')))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert proc.stdout.strip() == "['camera_service.mediamtx.http_errors']"
