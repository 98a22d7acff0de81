"""The JSON-RPC error catalog as exceptions: handlers raise them, dispatch answers with them."""

from __future__ import annotations

import re
from typing import Any

from camera_service.logging import redact

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
AUTHENTICATION_FAILED = -32001
PERMISSION_DENIED = -32002
NOT_FOUND = -32010
INVALID_STATE = -32020
UNSUPPORTED = -32030
RATE_LIMITED = -32040
DEPENDENCY_FAILED = -32050
INSUFFICIENT_STORAGE = -32060

ERROR_NAMES = {
    PARSE_ERROR: "Parse error",
    INVALID_REQUEST: "Invalid request",
    METHOD_NOT_FOUND: "Method not found",
    INVALID_PARAMS: "Invalid params",
    INTERNAL_ERROR: "Internal error",
    AUTHENTICATION_FAILED: "Authentication failed",
    PERMISSION_DENIED: "Permission denied",
    NOT_FOUND: "Not found",
    INVALID_STATE: "Invalid state",
    UNSUPPORTED: "Unsupported",
    RATE_LIMITED: "Rate limited",
    DEPENDENCY_FAILED: "Dependency failed",
    INSUFFICIENT_STORAGE: "Insufficient storage",
}


class RpcError(Exception):
    """An error answer: `code`, a short human `message` and optional structured `data`."""

    code = INTERNAL_ERROR

    def __init__(self, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data

    def to_dict(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def _compact(**data: Any) -> dict[str, Any]:
    return {key: value for key, value in data.items() if value is not None}


class ParseError(RpcError):
    code = PARSE_ERROR

    def __init__(self, detail: str) -> None:
        super().__init__("Parse error: the message is not valid JSON.", {"hint": detail})


class InvalidRequest(RpcError):
    code = INVALID_REQUEST

    def __init__(self, hint: str) -> None:
        super().__init__("Invalid request: not a JSON-RPC 2.0 request object.", {"hint": hint})


class MethodNotFound(RpcError):
    code = METHOD_NOT_FOUND

    def __init__(self, method: str) -> None:
        super().__init__(
            f"Method not found: {method[:64]}.",
            {"method": method[:64], "hint": "call rpc.discover for the list of methods"},
        )


class InvalidParams(RpcError):
    code = INVALID_PARAMS

    def __init__(self, param: str, rule: str, hint: str | None = None) -> None:
        super().__init__(
            f"Invalid params: {param}: {rule}.", _compact(param=param, rule=rule, hint=hint)
        )


class InternalError(RpcError):
    code = INTERNAL_ERROR

    def __init__(self, request_id: str) -> None:
        super().__init__(
            "Internal error: the server failed to handle the request.",
            {"request_id": request_id},
        )


class AuthenticationFailed(RpcError):
    code = AUTHENTICATION_FAILED

    def __init__(self, reason: str) -> None:
        super().__init__(f"Authentication failed: {reason}.", {"reason": reason})


class PermissionDenied(RpcError):
    code = PERMISSION_DENIED

    def __init__(self, required_role: str, have_role: str) -> None:
        super().__init__(
            f"Permission denied: this method needs the {required_role} role.",
            {"required_role": required_role, "have_role": have_role},
        )


class NotFound(RpcError):
    code = NOT_FOUND

    def __init__(self, resource: str, identifier: str) -> None:
        super().__init__(
            f"Not found: no {resource} {identifier!r}.", {"resource": resource, "id": identifier}
        )


class InvalidState(RpcError):
    code = INVALID_STATE

    def __init__(self, message: str, state: str, allowed_states: list[str]) -> None:
        super().__init__(message, {"state": state, "allowed_states": allowed_states})


class Unsupported(RpcError):
    code = UNSUPPORTED

    def __init__(self, feature: str, message: str | None = None) -> None:
        super().__init__(
            message or f"Unsupported: {feature} is not available.", {"feature": feature}
        )


class RateLimited(RpcError):
    code = RATE_LIMITED

    def __init__(self, retry_after_ms: int, scope: str = "connection") -> None:
        super().__init__(
            "Rate limited: too many requests, retry later.",
            {"retry_after_ms": retry_after_ms, "scope": scope},
        )


# An absolute path (not the path part of a URL): its directories are dropped.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/(?:[^\s/'\"():,;]+/)*([^\s/'\"():,;]+)")


def redact_paths(text: str) -> str:
    """``text`` with every absolute server path reduced to its last component."""
    return _ABSOLUTE_PATH.sub(lambda match: match.group(1), text)


def public_detail(text: str) -> str:
    """FFmpeg's or a child's words made fit for any role: no server paths, and no
    credentials (an external stream's ``rtsp://user:password@`` echoed in FFmpeg's error,
    tokens), as in the log."""
    return redact_paths(redact(text))


class DependencyFailed(RpcError):
    """``detail`` (often FFmpeg's or ffprobe's own words) never shows a server path or a
    credential: any role may see it, and paths are for the log."""

    code = DEPENDENCY_FAILED

    def __init__(self, dependency: str, detail: str) -> None:
        super().__init__(
            f"Dependency failed: {dependency} is unavailable or failed.",
            {"dependency": dependency, "detail": public_detail(detail)},
        )


class InsufficientStorage(RpcError):
    code = INSUFFICIENT_STORAGE

    def __init__(self, available_bytes: int, threshold_bytes: int) -> None:
        super().__init__(
            "Insufficient storage: free space is under the blocking threshold.",
            {"available_bytes": available_bytes, "threshold_bytes": threshold_bytes},
        )
