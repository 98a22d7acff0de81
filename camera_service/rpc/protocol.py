"""JSON-RPC 2.0 envelope: parse frames, validate request objects, build responses. No I/O.

Validation is a handful of type checks rather than a JSON-Schema pass: the envelope has four
members, and checking them by hand costs ~1 µs where jsonrpcserver's jsonschema validation
costs ~30 µs on this machine (see docs/performance.md, "RPC throughput").
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from camera_service.rpc.errors import InvalidRequest, ParseError, RpcError

_ALLOWED_MEMBERS = frozenset({"jsonrpc", "method", "params", "id"})
_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str, allow_nan=False)
encode = _encoder.encode

RequestId = str | int | float | None

# JSON may spell a lone UTF-16 surrogate (`"\ud800"`); such a string is not Unicode text and
# cannot be encoded as UTF-8, so it is invalid wherever it appears (api.md §1).
_SURROGATE = re.compile("[\ud800-\udfff]")


def has_surrogate(text: str) -> bool:
    """True when `text` holds a lone surrogate (a str decoded from UTF-8 never does)."""
    return not text.isascii() and _SURROGATE.search(text) is not None


def surrogate_path(value: Any, prefix: str = "") -> str | None:
    """Dotted path of the first string or key holding a lone surrogate in a JSON value, or None.

    Iterative, so a deeply nested value cannot exhaust the stack."""
    stack: list[tuple[str, Any]] = [(prefix, value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if has_surrogate(item):
                return path or "params"
        elif isinstance(item, dict):
            for key, child in item.items():
                child_path = f"{path}.{key}" if path else str(key)
                if has_surrogate(key):
                    return path or "params"
                stack.append((child_path, child))
        elif isinstance(item, list):
            stack.extend((f"{path}[{i}]", child) for i, child in enumerate(item))
    return None


@dataclass(frozen=True, slots=True)
class RawJson:
    """A result that is JSON text already (the cached `rpc.discover` document): spliced into
    the response as is instead of being encoded again."""

    text: str


def encode_message(message: dict[str, Any]) -> str:
    """One response as JSON text; a `RawJson` result goes in verbatim."""
    result = message.get("result")
    if isinstance(result, RawJson):
        return f'{{"jsonrpc":"2.0","result":{result.text},"id":{encode(message.get("id"))}}}'
    return encode(message)


def encode_batch(messages: list[dict[str, Any]]) -> str:
    return "[" + ",".join(encode_message(message) for message in messages) + "]"


@dataclass(slots=True)
class Request:
    method: str
    params: dict[str, Any] | list[Any] | None
    id: RequestId
    is_notification: bool
    escaped: bool = False  # the frame spells `\u` escapes: params may hold lone surrogates


@dataclass(slots=True)
class Invalid:
    """An entry that is not a valid request: answered with `error` and `id` (null if unknown)."""

    error: RpcError
    id: RequestId


Entry = Request | Invalid


@dataclass(slots=True)
class Parsed:
    entries: list[Entry]
    is_batch: bool


def _valid_id(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return not has_surrogate(value)
    return value is None or (isinstance(value, int) and not isinstance(value, bool))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def parse_entry(obj: Any, escaped: bool = True) -> Entry:
    if not isinstance(obj, dict):
        return Invalid(InvalidRequest("a request must be a JSON object"), None)
    has_id = "id" in obj
    request_id = obj.get("id")
    if has_id and not _valid_id(request_id):
        return Invalid(
            InvalidRequest("id must be a string (valid Unicode), a number or null"), None
        )
    echo_id = request_id if has_id else None
    if obj.get("jsonrpc") != "2.0":
        return Invalid(InvalidRequest('jsonrpc must be exactly "2.0"'), echo_id)
    method = obj.get("method")
    if not isinstance(method, str) or not method:
        return Invalid(InvalidRequest("method must be a non-empty string"), echo_id)
    if has_surrogate(method):
        return Invalid(InvalidRequest("method must be valid Unicode text"), echo_id)
    unknown = obj.keys() - _ALLOWED_MEMBERS
    if unknown:
        if any(has_surrogate(name) for name in unknown):
            return Invalid(InvalidRequest("member names must be valid Unicode text"), echo_id)
        names = ", ".join(sorted(unknown)[:5])
        return Invalid(InvalidRequest(f"unknown members: {names}"), echo_id)
    params = obj.get("params")
    if "params" in obj and not isinstance(params, dict | list):
        return Invalid(InvalidRequest("params must be an object or absent"), echo_id)
    return Request(method, params, request_id, not has_id, escaped)


def _loads(frame: str | bytes) -> Any:
    """`json.loads(frame, parse_constant=_reject_constant)` without building a decoder per
    call (~1 µs): the same decoding of bytes and the same refusal of a leading BOM."""
    if isinstance(frame, bytes):
        frame = frame.decode(json.detect_encoding(frame), "surrogatepass")
    elif frame.startswith("\ufeff"):
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", frame, 0)
    return _DECODER.decode(frame)


def parse(frame: str | bytes, max_batch: int) -> Parsed | Invalid:
    """Parse one WebSocket frame. A whole-frame failure comes back as a single `Invalid`."""
    try:
        obj = _loads(frame)
    except (ValueError, UnicodeDecodeError) as exc:
        return Invalid(ParseError(str(exc)[:200]), None)
    except RecursionError:
        return Invalid(ParseError("nesting too deep"), None)
    escaped = b"\\u" in frame if isinstance(frame, bytes) else "\\u" in frame
    if isinstance(obj, list):
        if not obj:
            return Invalid(InvalidRequest("an empty batch is not a request"), None)
        if len(obj) > max_batch:
            return Invalid(
                InvalidRequest(f"batch of {len(obj)} entries exceeds the limit of {max_batch}"),
                None,
            )
        return Parsed([parse_entry(item, escaped) for item in obj], is_batch=True)
    return Parsed([parse_entry(obj, escaped)], is_batch=False)


def result_response(request_id: RequestId, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "result": result, "id": request_id}


def error_response(request_id: RequestId, error: RpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": error.to_dict(), "id": request_id}


def notification(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params}
