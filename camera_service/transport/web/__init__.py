"""A small HTTP/1.1 server on h11 for port 8003, with the names of aiohttp's `web` that the
handlers use (`web.Request`, `web.json_response`, `web.HTTPNotFound`, ...).

Modules: `messages` (requests, responses), `errors` (HTTP error answers), `files` (file
responses, static lookup), `routing` (router), `framing` (response heads and body framing),
`protocol` (one connection), `server`.
"""

from camera_service.transport.web.errors import (
    BodyTimeout,
    HTTPBadRequest,
    HTTPException,
    HTTPForbidden,
    HTTPInternalServerError,
    HTTPMethodNotAllowed,
    HTTPNotFound,
    HTTPPreconditionFailed,
    HTTPRequestEntityTooLarge,
    HTTPRequestRangeNotSatisfiable,
    HTTPRequestTimeout,
    HTTPServiceUnavailable,
    HTTPTooManyRequests,
    HTTPUnauthorized,
)
from camera_service.transport.web.files import FileResponse
from camera_service.transport.web.messages import (
    DEFAULT_MAX_BODY,
    Headers,
    Request,
    Response,
    StreamResponse,
    json_response,
)
from camera_service.transport.web.routing import Application, Router

__all__ = [
    "DEFAULT_MAX_BODY",
    "Application",
    "BodyTimeout",
    "FileResponse",
    "HTTPBadRequest",
    "HTTPException",
    "HTTPForbidden",
    "HTTPInternalServerError",
    "HTTPMethodNotAllowed",
    "HTTPNotFound",
    "HTTPPreconditionFailed",
    "HTTPRequestEntityTooLarge",
    "HTTPRequestRangeNotSatisfiable",
    "HTTPRequestTimeout",
    "HTTPServiceUnavailable",
    "HTTPTooManyRequests",
    "HTTPUnauthorized",
    "Headers",
    "Request",
    "Response",
    "Router",
    "StreamResponse",
    "json_response",
]
