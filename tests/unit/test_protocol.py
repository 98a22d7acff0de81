from __future__ import annotations

import pytest

from camera_service.rpc import protocol
from camera_service.rpc.errors import INVALID_REQUEST, PARSE_ERROR


def single(frame: str) -> protocol.Entry:
    parsed = protocol.parse(frame, max_batch=50)
    assert isinstance(parsed, protocol.Parsed) and not parsed.is_batch
    return parsed.entries[0]


def test_request_and_notification() -> None:
    request = single('{"jsonrpc":"2.0","method":"m","params":{"a":1},"id":7}')
    assert request == protocol.Request("m", {"a": 1}, 7, False)
    note = single('{"jsonrpc":"2.0","method":"m"}')
    assert isinstance(note, protocol.Request) and note.is_notification


@pytest.mark.parametrize(
    ("frame", "echo"),
    [
        ('{"jsonrpc":"2.0","method":"m","id":true}', None),
        ('{"jsonrpc":"2.0","method":"m","id":[1]}', None),
        ('{"jsonrpc":"2.0","method":"m","id":1e400}', None),
        ('{"jsonrpc":"2.0","method":"","id":3}', 3),
        ('{"jsonrpc":2.0,"method":"m","id":"x"}', "x"),
        ('{"jsonrpc":"2.0","method":"m","params":5,"id":4}', 4),
        ('{"jsonrpc":"2.0","method":"m","id":4,"x":1}', 4),
    ],
)
def test_invalid_requests_echo_valid_ids_only(frame: str, echo: object) -> None:
    entry = single(frame)
    assert isinstance(entry, protocol.Invalid)
    assert entry.error.code == INVALID_REQUEST
    assert entry.id == echo


@pytest.mark.parametrize("frame", ["{", "NaN", '{"a": Infinity}', "[" * 100000, b"\xff"])
def test_parse_errors(frame: str | bytes) -> None:
    parsed = protocol.parse(frame, max_batch=50)
    assert isinstance(parsed, protocol.Invalid) and parsed.error.code == PARSE_ERROR


def test_batch_limits() -> None:
    empty = protocol.parse("[]", max_batch=2)
    assert isinstance(empty, protocol.Invalid) and empty.error.code == INVALID_REQUEST
    big = protocol.parse("[1,2,3]", max_batch=2)
    assert isinstance(big, protocol.Invalid) and "limit of 2" in big.error.data["hint"]  # type: ignore[index]
    ok = protocol.parse("[1,2]", max_batch=2)
    assert isinstance(ok, protocol.Parsed) and ok.is_batch and len(ok.entries) == 2


def test_responses_have_exactly_one_of_result_or_error() -> None:
    from camera_service.rpc.errors import NotFound

    ok = protocol.result_response(1, None)
    assert ok == {"jsonrpc": "2.0", "result": None, "id": 1}
    bad = protocol.error_response("a", NotFound("camera", "camera9"))
    assert "result" not in bad
    assert bad["error"]["data"] == {"resource": "camera", "id": "camera9"}


def test_encoder_refuses_non_finite_numbers() -> None:
    with pytest.raises(ValueError):
        protocol.encode({"x": float("nan")})


def test_lone_surrogates_are_found_in_deep_values_without_recursion() -> None:
    nested: object = "\ud800"
    for _ in range(5000):
        nested = [nested]
    assert protocol.surrogate_path({"a": nested}) is not None
    assert protocol.surrogate_path({"a": ["ok", {"b": "\U0001f600"}]}) is None
    assert protocol.surrogate_path({"a": {"\udc00": 1}}) == "a"
    assert not protocol.has_surrogate("caf\u00e9 \U0001f600")
