"""Pure parts of the HTTP server: response framing, byte ranges, routing, static lookup."""

from __future__ import annotations

from pathlib import Path

import h11
import pytest

from camera_service.transport.web.errors import HTTPForbidden, HTTPNotFound
from camera_service.transport.web.files import parse_range, resolve_static
from camera_service.transport.web.framing import (
    FramingError,
    Mode,
    keeps_alive,
    response_head,
)
from camera_service.transport.web.routing import Router, split_path


def client_reads(head: bytes, body: list[bytes], method: bytes = b"GET") -> tuple[int, bytes]:
    """What h11's client side makes of a response head and body pieces."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method=method, target="/", headers=[("Host", "t")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(head + b"".join(body))
    status, got = 0, b""
    while True:
        event = conn.next_event()
        if isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            got += bytes(event.data)
        elif isinstance(event, h11.EndOfMessage):
            return status, got
        elif event is h11.NEED_DATA:
            conn.receive_data(b"")  # close-delimited bodies end at EOF


def test_length_framed_response_is_read_back_exactly() -> None:
    framing = response_head(
        200, "OK", [("Content-Length", "5")], method="GET", http11=True, keep_alive=True
    )
    assert framing.mode is Mode.LENGTH and not framing.close
    pieces = framing.body(b"hel") + framing.body(b"lo") + [framing.end()]
    assert client_reads(framing.head, pieces) == (200, b"hello")


def test_length_framing_refuses_too_much_and_too_little() -> None:
    framing = response_head(
        200, "OK", [("Content-Length", "3")], method="GET", http11=True, keep_alive=True
    )
    with pytest.raises(FramingError):
        framing.body(b"abcd")
    framing.body(b"ab")
    with pytest.raises(FramingError):
        framing.end()


def test_unknown_length_is_chunked_to_http11_and_close_delimited_to_http10() -> None:
    chunked = response_head(200, "OK", [], method="GET", http11=True, keep_alive=True)
    assert chunked.mode is Mode.CHUNKED and b"Transfer-Encoding: chunked" in chunked.head
    assert not chunked.close
    body = chunked.body(b"abc") + chunked.body(b"") + chunked.body(b"defg") + [chunked.end()]
    assert client_reads(chunked.head, body) == (200, b"abcdefg")
    old = response_head(200, "OK", [], method="GET", http11=False, keep_alive=False)
    assert old.mode is Mode.CLOSE and old.close
    assert b"Transfer-Encoding" not in old.head and b"Connection: close" in old.head


def test_head_and_304_have_no_body_but_keep_their_headers() -> None:
    head = response_head(
        200, "OK", [("Content-Length", "9")], method="HEAD", http11=True, keep_alive=True
    )
    assert head.mode is Mode.NONE and b"Content-Length: 9" in head.head
    assert head.body(b"x" * 9) == [] and head.end() == b""
    assert client_reads(head.head, [], b"HEAD") == (200, b"")
    not_modified = response_head(
        304, "Not Modified", [], method="GET", http11=True, keep_alive=True
    )
    assert not_modified.mode is Mode.NONE and b"Transfer-Encoding" not in not_modified.head


def test_connection_close_and_keep_alive_rules() -> None:
    assert keeps_alive("1.1", None) and keeps_alive("1.1", "keep-alive")
    assert not keeps_alive("1.1", "Close") and not keeps_alive("1.0", "keep-alive")
    asked = response_head(200, "OK", [], method="GET", http11=True, keep_alive=False)
    assert asked.close and asked.head.count(b"Connection: close") == 1
    said = response_head(
        200, "OK", [("Connection", "close")], method="GET", http11=True, keep_alive=True
    )
    assert said.close and said.head.count(b"Connection: close") == 1


@pytest.mark.parametrize("value", ["a\r\nSet-Cookie: x=1", "a\nb", "a\0b"])
def test_header_injection_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="control character"):
        response_head(200, "OK", [("X-Name", value)], method="GET", http11=True, keep_alive=True)


@pytest.mark.parametrize(
    ("value", "size", "span"),
    [
        ("bytes=0-0", 10, (0, 1)),
        ("bytes=9-", 10, (9, 1)),
        ("bytes=-3", 10, (7, 3)),
        ("bytes=-30", 10, (0, 10)),
        ("bytes=2-100", 10, (2, 8)),
        (" bytes = 1-2", 10, (1, 2)),
        ("bytes=10-", 10, None),
        ("bytes=-0", 10, None),
        ("bytes=-1", 0, None),
        ("bytes=3-2", 10, None),
        ("bytes=1-2,4-5", 10, None),
        ("bytes=-", 10, None),
        ("bytes=a-b", 10, None),
        ("bytes=1-b", 10, None),
        ("bits=1-2", 10, None),
    ],
)
def test_parse_range(value: str, size: int, span: tuple[int, int] | None) -> None:
    assert parse_range(value, size) == span


def test_split_path_keeps_encoded_slashes_inside_a_segment() -> None:
    assert split_path("/files/snapshots/..%2Fx%20y") == ["files", "snapshots", "../x y"]
    assert split_path("/") == [""]


def test_router_order_params_and_methods() -> None:
    router = Router()

    async def a(request: object) -> object:
        return "a"

    async def b(request: object) -> object:
        return "b"

    router.add_get("/health/live", a)  # type: ignore[arg-type]
    router.add_get("/health/{component}", b)  # type: ignore[arg-type]
    live, param = router.routes[0], router.routes[1]
    assert live.match(["health", "live"]) == {}  # type: ignore[union-attr]
    assert param.match(["health", "live"]) == {"component": "live"}  # type: ignore[union-attr]
    assert param.match(["health", ""]) is None  # type: ignore[union-attr]
    assert param.match(["health", "a", "b"]) is None  # type: ignore[union-attr]
    assert live.methods == {"GET", "HEAD"}  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        router.add_static("/", Path("."), follow_symlinks=True)


def test_resolve_static_refuses_what_leaves_the_directory(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f.txt").write_text("x")
    (tmp_path / "l.txt").symlink_to(tmp_path / "d" / "f.txt")
    assert resolve_static(tmp_path, ["d", "f.txt"]) == tmp_path / "d" / "f.txt"
    with pytest.raises(HTTPForbidden):
        resolve_static(tmp_path, ["d"])
    for bad in (["..", "x"], ["."], ["d", ""], ["a/b"], ["a\\b"], ["a\0"], ["l.txt"], []):
        with pytest.raises(HTTPNotFound):
            resolve_static(tmp_path, bad)
