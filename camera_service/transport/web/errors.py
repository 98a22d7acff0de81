"""HTTP error answers a handler raises (named as aiohttp named them). No I/O.

Each carries its status, a plain-text body and extra headers; the server turns it into the
response (security headers added like on any other)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from http import HTTPStatus


class HTTPException(Exception):
    status_code = 500

    def __init__(
        self,
        *,
        text: str | None = None,
        headers: Mapping[str, str] | None = None,
        reason: str | None = None,
    ) -> None:
        self.reason = reason or HTTPStatus(self.status_code).phrase
        self.text = text if text is not None else f"{self.status_code}: {self.reason}"
        self.headers: dict[str, str] = dict(headers or {})
        super().__init__(self.text)

    @property
    def status(self) -> int:
        return self.status_code


class HTTPBadRequest(HTTPException):
    status_code = 400


class HTTPUnauthorized(HTTPException):
    status_code = 401


class HTTPForbidden(HTTPException):
    status_code = 403


class HTTPNotFound(HTTPException):
    status_code = 404


class HTTPMethodNotAllowed(HTTPException):
    status_code = 405

    def __init__(self, method: str, allowed: Iterable[str]) -> None:
        methods = sorted(set(allowed))
        super().__init__(headers={"Allow": ",".join(methods)})
        self.method = method
        self.allowed_methods = frozenset(methods)


class HTTPRequestTimeout(HTTPException):
    status_code = 408


class HTTPPreconditionFailed(HTTPException):
    status_code = 412


class HTTPRequestEntityTooLarge(HTTPException):
    status_code = 413

    def __init__(self, max_size: int, actual_size: int) -> None:
        super().__init__(
            text=f"Maximum request body size {max_size} exceeded, actual body size {actual_size}"
        )
        self.max_size = max_size
        self.actual_size = actual_size


class HTTPRequestRangeNotSatisfiable(HTTPException):
    status_code = 416


class HTTPTooManyRequests(HTTPException):
    status_code = 429


class HTTPRequestHeaderFieldsTooLarge(HTTPException):
    status_code = 431


class HTTPInternalServerError(HTTPException):
    status_code = 500


class HTTPServiceUnavailable(HTTPException):
    status_code = 503


class BodyTimeout(Exception):
    """The request body did not arrive within `http.body_timeout` (raised into the read)."""
