"""The errors of :mod:`camera_service.mediamtx.http_client`, in a module of their own so
that catching them does not load h11 (the client itself is loaded with the first request)."""

from __future__ import annotations


class HTTPError(Exception):
    """The exchange failed: no (complete, acceptable) response."""


class ConnectFailed(HTTPError):
    """The TCP (or TLS) connection could not be opened."""


class ConnectionLost(HTTPError):
    """The connection closed before the response was complete.

    ``sent``: some of the request had been written; ``received``: some of the response had
    arrived. Only a loss with nothing received is worth a retry.
    """

    def __init__(self, message: str, *, sent: bool, received: bool) -> None:
        super().__init__(message)
        self.sent = sent
        self.received = received


class ProtocolViolation(HTTPError):
    """The server's answer is not HTTP/1.1 (bad status line, head too large, bad framing)."""


class BodyTooLarge(HTTPError):
    """The response body is longer than the client's ``max_body``."""


class RequestTimeout(HTTPError, TimeoutError):
    """The request's deadline passed; the message names the phase."""


class ClientClosed(HTTPError):
    """The :class:`HTTPClient` was closed."""
