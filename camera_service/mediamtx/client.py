"""Typed asyncio client for the MediaMTX v3 control API.

Requests go through one :class:`~camera_service.mediamtx.http_client.HTTPClient` per client
(h11 over a bounded pool of keep-alive connections; created, and h11 imported, with the
first request, so a daemon with MediaMTX off never loads them; closed by
:meth:`MediaMTXClient.close`), a deadline on every request, and a small exception
hierarchy so callers never see transport or pydantic exceptions:

``MediaMTXError``
    ``MediaMTXUnavailable``   connection refused/reset, timeout, unreadable or oversized
                              response
    ``MediaMTXNotFound``      404 (``error`` message of the server in ``message``)
    ``MediaMTXRequestError``  400 (``error`` message of the server in ``message``)
    ``MediaMTXServerError``   5xx

Other statuses (401/403 when API auth is misconfigured, ...) raise the base class.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar
from urllib.parse import quote, urlencode, urlsplit

from pydantic import BaseModel, ValidationError

from camera_service.mediamtx.http_errors import HTTPError
from camera_service.mediamtx.models import (
    Info,
    Path,
    PathConf,
    PathConfList,
    PathList,
    Recording,
    RecordingList,
)

if TYPE_CHECKING:
    from camera_service.mediamtx.http_client import HTTPClient

DEFAULT_TIMEOUT = 5.0
#: Page size used by the ``*_all`` helpers (MediaMTX's own default is 100).
PAGE_SIZE = 100
#: Safety bound on pages fetched by the ``*_all`` helpers.
MAX_PAGES = 1000

M = TypeVar("M", bound=BaseModel)

#: Session kinds of each protocol of MediaMTX's authentication requests, for kicks.
KICK_ENDPOINTS: dict[str, tuple[str, ...]] = {
    "rtsp": ("rtspsessions", "rtspssessions"),
    "rtmp": ("rtmpconns", "rtmpsconns"),
    "hls": ("hlssessions",),
    "webrtc": ("webrtcsessions",),
    "srt": ("srtconns",),
    "moq": ("moqsessions",),
}


class MediaMTXError(Exception):
    """Any failure talking to MediaMTX."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class MediaMTXUnavailable(MediaMTXError):
    """MediaMTX cannot be reached (connection error, timeout, broken response)."""


class MediaMTXNotFound(MediaMTXError):
    """404: the path / configuration / recording does not exist."""


class MediaMTXRequestError(MediaMTXError):
    """400: MediaMTX rejected the request; ``message`` is the server's ``error``."""


class MediaMTXServerError(MediaMTXError):
    """5xx from MediaMTX."""


def _error_message(text: str, status: int) -> str:
    """The ``error`` member of an Error body, else the raw text, else the status."""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return str(data["error"])
    return text.strip() or f"HTTP {status}"


def _status_error(status: int, text: str, what: str) -> MediaMTXError:
    message = _error_message(text, status)
    if status == 404:
        return MediaMTXNotFound(message, status=status)
    if status == 400:
        return MediaMTXRequestError(message, status=status)
    if status >= 500:
        return MediaMTXServerError(f"{what}: {message}", status=status)
    return MediaMTXError(f"{what}: HTTP {status}: {message}", status=status)


def _name(name: str) -> str:
    """Percent-encode a path name for the URL (``/`` is legal inside MediaMTX names)."""
    if not name:
        raise ValueError("path name must not be empty")
    return quote(name, safe="/")


def _page_params(page: int | None, items_per_page: int | None) -> dict[str, str]:
    params: dict[str, str] = {}
    if page is not None:
        params["page"] = str(page)
    if items_per_page is not None:
        params["itemsPerPage"] = str(items_per_page)
    return params


class MediaMTXClient:
    """Client for ``/v3/...`` endpoints of one MediaMTX instance.

    ``base_url`` is the API root, e.g. ``http://127.0.0.1:9997``. ``timeout`` (seconds)
    bounds each request as a whole; every method also takes its own ``request_timeout``.
    An externally created ``session`` (an :class:`HTTPClient` for the same origin) is used
    as is and not closed by :meth:`close`.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        session: HTTPClient | None = None,
        auth: tuple[str, str] | None = None,
    ) -> None:
        """``auth``: user and password sent as HTTP Basic auth on every request (MediaMTX
        passes them to its authentication: the daemon's API credential)."""
        self._headers: list[tuple[str, str]] = [("Accept", "application/json")]
        if auth is not None:
            basic = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
            self._headers.append(("Authorization", f"Basic {basic}"))
        self._base_url = base_url.rstrip("/")
        #: The path part of ``base_url`` (MediaMTX behind a prefix), prepended to targets.
        self._prefix = urlsplit(self._base_url).path
        self._timeout = timeout
        self._session = session
        self._owns_session = session is None

    @property
    def base_url(self) -> str:
        return self._base_url

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the owned session (idempotent); the next request opens a new one."""
        if self._session is not None and self._owns_session:
            await self._session.close()
            self._session = None

    def _get_session(self) -> HTTPClient:
        if self._session is None or self._session.closed:
            if not self._owns_session:
                raise MediaMTXError("the injected HTTP client is closed")
            from camera_service.mediamtx.http_client import HTTPClient

            self._session = HTTPClient(self._base_url)
        return self._session

    # -- transport ---------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        request_timeout: float | None = None,
    ) -> str:
        """Send one request; return the response text or raise a MediaMTXError."""
        what = f"{method} {path}"
        target = self._prefix + path
        if params:
            target += "?" + urlencode(params)
        headers = self._headers
        data: bytes | None = None
        if body is not None:
            data = json.dumps(dict(body)).encode()
            headers = [*headers, ("Content-Type", "application/json")]
        try:
            response = await self._get_session().request(
                method,
                target,
                headers=headers,
                body=data,
                timeout=request_timeout if request_timeout is not None else self._timeout,
            )
        except TimeoutError as exc:
            # RequestTimeout: "timed out after 3 s waiting for the response head"
            raise MediaMTXUnavailable(f"{what}: {exc or 'timed out'}") from exc
        except HTTPError as exc:
            raise MediaMTXUnavailable(f"{what}: {exc.__class__.__name__}: {exc}") from exc
        try:
            text = response.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MediaMTXUnavailable(f"{what}: response is not UTF-8: {exc}") from exc
        if response.status >= 300:
            raise _status_error(response.status, text, what)
        return text

    async def _get_model(
        self,
        model: type[M],
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        request_timeout: float | None = None,
    ) -> M:
        text = await self._request("GET", path, params=params, request_timeout=request_timeout)
        try:
            return model.model_validate_json(text)
        except ValidationError as exc:
            raise MediaMTXUnavailable(f"GET {path}: unexpected response: {exc}") from exc

    # -- general -----------------------------------------------------------------------

    async def info(self, *, request_timeout: float | None = None) -> Info:
        """``GET /v3/info``: version and start time; the cheapest liveness probe."""
        return await self._get_model(Info, "/v3/info", request_timeout=request_timeout)

    # -- path configuration ------------------------------------------------------------

    async def list_config_paths(
        self,
        *,
        page: int | None = None,
        items_per_page: int | None = None,
        request_timeout: float | None = None,
    ) -> PathConfList:
        """``GET /v3/config/paths/list`` (one page)."""
        return await self._get_model(
            PathConfList,
            "/v3/config/paths/list",
            params=_page_params(page, items_per_page),
            request_timeout=request_timeout,
        )

    async def list_all_config_paths(
        self, *, request_timeout: float | None = None
    ) -> list[PathConf]:
        """Every configured path, following pagination."""
        items: list[PathConf] = []
        for page in range(MAX_PAGES):
            result = await self.list_config_paths(
                page=page, items_per_page=PAGE_SIZE, request_timeout=request_timeout
            )
            items.extend(result.items)
            if page + 1 >= result.page_count:
                break
        return items

    async def get_config_path(self, name: str, *, request_timeout: float | None = None) -> PathConf:
        """``GET /v3/config/paths/get/{name}``; raises MediaMTXNotFound."""
        return await self._get_model(
            PathConf, f"/v3/config/paths/get/{_name(name)}", request_timeout=request_timeout
        )

    async def add_config_path(
        self, name: str, conf: PathConf, *, request_timeout: float | None = None
    ) -> None:
        """``POST /v3/config/paths/add/{name}``; 400 if it already exists."""
        await self._request(
            "POST",
            f"/v3/config/paths/add/{_name(name)}",
            body=conf.to_body(),
            request_timeout=request_timeout,
        )

    async def patch_config_path(
        self, name: str, conf: PathConf, *, request_timeout: float | None = None
    ) -> None:
        """``PATCH /v3/config/paths/patch/{name}``: change only the fields set in ``conf``."""
        await self._request(
            "PATCH",
            f"/v3/config/paths/patch/{_name(name)}",
            body=conf.to_body(),
            request_timeout=request_timeout,
        )

    async def replace_config_path(
        self, name: str, conf: PathConf, *, request_timeout: float | None = None
    ) -> None:
        """``POST /v3/config/paths/replace/{name}``: fields not in ``conf`` revert to defaults."""
        await self._request(
            "POST",
            f"/v3/config/paths/replace/{_name(name)}",
            body=conf.to_body(),
            request_timeout=request_timeout,
        )

    async def delete_config_path(self, name: str, *, request_timeout: float | None = None) -> None:
        """``DELETE /v3/config/paths/delete/{name}``; raises MediaMTXNotFound."""
        await self._request(
            "DELETE", f"/v3/config/paths/delete/{_name(name)}", request_timeout=request_timeout
        )

    # -- runtime paths -----------------------------------------------------------------

    async def list_paths(
        self,
        *,
        page: int | None = None,
        items_per_page: int | None = None,
        request_timeout: float | None = None,
    ) -> PathList:
        """``GET /v3/paths/list`` (one page)."""
        return await self._get_model(
            PathList,
            "/v3/paths/list",
            params=_page_params(page, items_per_page),
            request_timeout=request_timeout,
        )

    async def list_all_paths(self, *, request_timeout: float | None = None) -> list[Path]:
        """Every runtime path, following pagination."""
        items: list[Path] = []
        for page in range(MAX_PAGES):
            result = await self.list_paths(
                page=page, items_per_page=PAGE_SIZE, request_timeout=request_timeout
            )
            items.extend(result.items)
            if page + 1 >= result.page_count:
                break
        return items

    async def get_path(self, name: str, *, request_timeout: float | None = None) -> Path:
        """``GET /v3/paths/get/{name}``; raises MediaMTXNotFound."""
        return await self._get_model(
            Path, f"/v3/paths/get/{_name(name)}", request_timeout=request_timeout
        )

    # -- recordings --------------------------------------------------------------------

    async def list_recordings(
        self,
        *,
        page: int | None = None,
        items_per_page: int | None = None,
        request_timeout: float | None = None,
    ) -> RecordingList:
        """``GET /v3/recordings/list``: recorded segments grouped by path (one page)."""
        return await self._get_model(
            RecordingList,
            "/v3/recordings/list",
            params=_page_params(page, items_per_page),
            request_timeout=request_timeout,
        )

    async def get_recording(self, name: str, *, request_timeout: float | None = None) -> Recording:
        """``GET /v3/recordings/get/{name}``; raises MediaMTXNotFound."""
        return await self._get_model(
            Recording, f"/v3/recordings/get/{_name(name)}", request_timeout=request_timeout
        )

    # -- global configuration and sessions --------------------------------------------

    async def global_config(self, *, request_timeout: float | None = None) -> dict[str, Any]:
        """``GET /v3/config/global/get`` as raw JSON (only a few keys are read from it)."""
        text = await self._request("GET", "/v3/config/global/get", request_timeout=request_timeout)
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise MediaMTXUnavailable(f"GET /v3/config/global/get: not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise MediaMTXUnavailable("GET /v3/config/global/get: not a JSON object")
        return data

    async def kick_session(
        self, protocol: str, session_id: str, *, request_timeout: float | None = None
    ) -> bool:
        """Close a reader's session (``POST /v3/<kind>/kick/{id}``); False when MediaMTX has
        no such session (ended already, or the id was a connection's)."""
        for kind in KICK_ENDPOINTS.get(protocol, ()):
            try:
                await self._request(
                    "POST", f"/v3/{kind}/kick/{_name(session_id)}", request_timeout=request_timeout
                )
            except MediaMTXNotFound:
                continue
            return True
        return False
