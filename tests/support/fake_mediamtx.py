"""In-memory stand-in for the MediaMTX v3 control API, for tests.

* Routes, request-body schemas and status codes come from the OpenAPI document
  (``shared/reference/mediamtx-openapi.yaml``): every operation the camera-service client
  uses is registered under the spec's own route template, and a request body is checked
  with ``openapi-schema-validator`` against the operation's ``requestBody`` schema
  (``$ref``\\s resolved inside the document). Invalid JSON or a body that does not
  validate gets ``400 {"status": "error", "error": ...}``, as MediaMTX answers.
* The spec does not say ``additionalProperties: false``, but MediaMTX decodes bodies with
  unknown fields forbidden (``conf/jsonwrapper``: ``DisallowUnknownFields``). With
  ``forbid_unknown_fields=True`` (default) the loaded component schemas are closed
  programmatically so the fake rejects unknown fields too.
* Config paths live in memory; ``GET`` answers carry every PathConf field, defaults taken
  from ``pathDefaults`` of the reference ``mediamtx.yml`` (like the real server, which
  echoes the whole configuration). ``/v3/paths/list`` shows one runtime path per
  non-regex config path, not ready until a test calls :meth:`FakeMediaMTX.set_path_state`.
* :meth:`FakeMediaMTX.stop` / :meth:`FakeMediaMTX.start` keep the port, to simulate
  outages; ``start(reset=True)`` also forgets API-made state like a MediaMTX restart.
* Behaviour of the real server (rules in :mod:`tests.support.fake_mediamtx_rules`, each
  citing the MediaMTX file it mirrors): a config write answers 200 at once and takes
  effect on the running path ``apply_delay`` later; ``replace`` of a missing path creates
  it; durations are echoed in MediaMTX's format (``0s`` → ``""``, ``24h`` → ``1d``); bad
  path names, source URLs and record settings get 400; a change outside ``record*``
  restarts the path, closing its RTSP readers.
* Media (:mod:`tests.support.fake_mediamtx_media`): :attr:`FakeMediaMTX.rtsp_port` takes
  RTSP readers. A reader of an on-demand path makes it ready ``publish_delay`` later (the
  publisher connected), and ``runOnDemandCloseAfter`` after the last reader left it is not
  ready any more. A ready path with ``record: true`` gets a segment file (written where
  ``recordPath`` says, closed with its duration when recording stops or the path closes).
* Failure injection: :meth:`fail_next` (HTTP error), :meth:`drop_next` (connection closed
  without an answer), :meth:`delay_next` (slow answer, for client timeouts).
* Authentication (``authMethod: http``): with :attr:`FakeMediaMTX.auth` set to a
  :class:`~tests.support.fake_mediamtx_auth.MediaMTXAuthCaller`, every API request is
  first sent to the auth hook as MediaMTX sends it (``action: api``, credentials from the
  Authorization header) and answered 401 when denied. ``GET /v3/config/global/get``
  answers :attr:`FakeMediaMTX.global_conf`; the ``.../kick/{id}`` operations close
  sessions added with :meth:`FakeMediaMTX.add_session` (404 for unknown ids).
* Every request is recorded in :attr:`FakeMediaMTX.requests`; :meth:`wait_until` waits
  for a condition on the fake's state, re-checked after every answered request.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self, cast

import aiohttp
from aiohttp import web

from tests.support import fake_mediamtx_rules as rules
from tests.support.fake_mediamtx_auth import MediaMTXAuthCaller, http_credentials
from tests.support.fake_mediamtx_media import FakeRTSPServer
from tests.support.fake_mediamtx_paths import PathState, RunningPaths
from tests.support.mediamtx_spec import (  # re-exported: tests import them from here
    _CONF_CANDIDATES,
    SpecValidator,
    _load_yaml,
    _path_defaults,
    find_reference,
    load_spec,
)

Json = dict[str, Any]


@dataclass
class RecordedRequest:
    method: str
    path: str
    operation_id: str
    query: dict[str, str]
    body: Any
    status: int | None = None


@dataclass
class _Fault:
    kind: str  # "status" | "drop" | "delay"
    remaining: int
    status: int = 500
    message: str = "injected failure"
    delay: float = 0.0
    operation: str | None = None


Handler = Callable[[web.Request, Any], Awaitable[web.Response]]
RouteHandler = Callable[[web.Request], Awaitable[web.Response]]


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"status": "error", "error": message}, status=status)


def _ok() -> web.Response:
    return web.json_response({"status": "ok"})


#: Kick operations of the spec -> the session kind in their route.
KICK_OPERATIONS = {
    "rtspSessionsKick": "rtspsessions",
    "rtspsSessionsKick": "rtspssessions",
    "hlssessionsKick": "hlssessions",
    "webrtcSessionsKick": "webrtcsessions",
    "rtmpConnsKick": "rtmpconns",
    "srtConnsKick": "srtconns",
}


def _global_defaults() -> Json:
    """Global settings of the reference mediamtx.yml (what ``configGlobalGet`` echoes)."""
    conf = _load_yaml(find_reference("MEDIAMTX_REFERENCE_CONF", _CONF_CANDIDATES))
    return {k: copy.deepcopy(v) for k, v in conf.items() if k not in ("paths", "pathDefaults")}


class FakeMediaMTX(RunningPaths):
    """aiohttp server implementing the MediaMTX API subset camera-service uses."""

    OPERATIONS = (
        "info",
        "configPathsList",
        "configPathsGet",
        "configPathsAdd",
        "configPathsPatch",
        "configPathsReplace",
        "configPathsDelete",
        "pathsList",
        "pathsGet",
        "recordingsList",
        "recordingsGet",
        "configGlobalGet",
        *KICK_OPERATIONS,
    )

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        spec: Json | None = None,
        forbid_unknown_fields: bool = True,
        apply_delay: float = 0.05,
        publish_delay: float = 0.05,
        playback: bool = False,
    ) -> None:
        self.host = host
        self.apply_delay = apply_delay
        self.publish_delay = publish_delay
        self.playback = playback
        self.rtsp = FakeRTSPServer(self._reader_connected, self._reader_left, host)
        self.rtsp_readers: dict[str, set[asyncio.StreamWriter]] = {}
        #: path → (segment file, start) while MediaMTX would be writing it.
        self.segments: dict[str, tuple[Path, datetime]] = {}
        self.segment_files: list[Path] = []
        self.record_errors: list[str] = []
        #: Paths whose publisher never manages to publish (they never become ready).
        self.unpublishable: set[str] = set()
        self._timers: set[asyncio.Task[None]] = set()
        self.port = port
        self.spec = spec if spec is not None else load_spec()
        self.validator = SpecValidator(self.spec, forbid_unknown_fields=forbid_unknown_fields)
        self.path_defaults = _path_defaults(self.spec)
        self.config_paths: dict[str, Json] = {}
        self.path_states: dict[str, PathState] = {}
        self.recordings: dict[str, list[str]] = {}
        self.requests: list[RecordedRequest] = []
        self.global_conf: Json = _global_defaults()
        self.sessions: dict[str, set[str]] = {}
        self.kicked: list[tuple[str, str]] = []
        self.auth: MediaMTXAuthCaller | None = None
        self._auth_session: aiohttp.ClientSession | None = None
        self.started_at = _now()
        #: What /v3/info reports (a development build's version passes the version gate).
        self.version = "v0.0.0-fake"
        self._ever_started = False
        self._faults: list[_Fault] = []
        self._runner: web.AppRunner | None = None
        self._request_seen = asyncio.Event()
        self._answered = asyncio.Event()
        self._stopping = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._runner is not None

    async def start(self, *, reset: bool = False) -> None:
        """Listen (again, on the same port once one was chosen).

        ``reset=True`` forgets config paths, path states, recordings and faults, like a
        MediaMTX restart loses what was added through the API.
        """
        if reset:
            self.config_paths.clear()
            self.path_states.clear()
            self.recordings.clear()
            self._faults.clear()
            self.segments.clear()  # a killed MediaMTX never closes its segments
        if self._runner is not None:
            return
        await self.rtsp.start()
        self._stopping = asyncio.Event()
        runner = web.AppRunner(self._build_app(), handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self.port = cast(tuple[str, int], runner.addresses[0])[1]
        if reset or not self._ever_started:
            # A restart (reset) is a new process: /v3/info ``started`` changes
            # (internal/api/api.go, infoGet). A network outage (no reset) keeps it.
            self.started_at = _now()
        self._ever_started = True
        self._runner = runner

    async def stop(self) -> None:
        """Stop listening and close open connections (state is kept)."""
        runner, self._runner = self._runner, None
        self._stopping.set()  # ends injected delays so shutdown does not wait for them
        for timer in list(self._timers):
            timer.cancel()
        await asyncio.gather(*self._timers, return_exceptions=True)
        await self.rtsp.stop()
        self.rtsp_readers.clear()
        if runner is not None:
            await runner.cleanup()
        if self._auth_session is not None:
            await self._auth_session.close()
            self._auth_session = None

    @property
    def rtsp_port(self) -> int:
        return self.rtsp.port

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- test helpers ------------------------------------------------------------------

    def set_config_path(self, name: str, **fields: Any) -> None:
        """Create a config path directly (as if from mediamtx.yml), defaults filled in."""
        self.config_paths[name] = rules.echo_conf({**self.path_defaults, **fields, "name": name})

    def set_path_state(self, name: str, **fields: Any) -> PathState:
        state = self.path_states.setdefault(name, PathState())
        for key, value in fields.items():
            if not hasattr(state, key):
                raise AttributeError(key)
            setattr(state, key, value)
        if state.ready and state.ready_time is None:
            state.ready_time = _now()
        return state

    def add_session(self, kind: str, session_id: str) -> None:
        """A reader session (``rtspsessions``, ``hlssessions``, ...) that can be kicked."""
        self.sessions.setdefault(kind, set()).add(session_id)

    def add_recording(self, name: str, *starts: str) -> None:
        self.recordings.setdefault(name, []).extend(starts)

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 500,
        message: str = "injected failure",
        operation: str | None = None,
    ) -> None:
        """The next ``count`` requests (of ``operation`` if given) answer ``status``."""
        self._faults.append(_Fault("status", count, status, message, operation=operation))

    def drop_next(self, count: int = 1, *, operation: str | None = None) -> None:
        """The next ``count`` requests get their connection closed without an answer."""
        self._faults.append(_Fault("drop", count, operation=operation))

    def delay_next(self, count: int, seconds: float, *, operation: str | None = None) -> None:
        """The next ``count`` requests are answered after ``seconds``."""
        self._faults.append(_Fault("delay", count, delay=seconds, operation=operation))

    def clear_faults(self) -> None:
        """Forget every pending injected fault (e.g. end a simulated hang)."""
        self._faults.clear()

    def requests_for(self, operation_id: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.operation_id == operation_id]

    async def wait_for_request(
        self, predicate: Callable[[RecordedRequest], bool], timeout: float = 5.0
    ) -> RecordedRequest:
        """Wait until a recorded request (finished or not) satisfies ``predicate``."""
        async with asyncio.timeout(timeout):
            while True:
                for req in self.requests:
                    if predicate(req):
                        return req
                self._request_seen.clear()
                await self._request_seen.wait()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until ``predicate()`` holds; checked now and after every answered request."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self._answered.clear()
                await self._answered.wait()

    # -- plumbing ----------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        handlers: dict[str, Handler] = {
            "info": self._info,
            "configPathsList": self._config_paths_list,
            "configPathsGet": self._config_paths_get,
            "configPathsAdd": self._config_paths_add,
            "configPathsPatch": self._config_paths_patch,
            "configPathsReplace": self._config_paths_replace,
            "configPathsDelete": self._config_paths_delete,
            "pathsList": self._paths_list,
            "pathsGet": self._paths_get,
            "recordingsList": self._recordings_list,
            "recordingsGet": self._recordings_get,
            "configGlobalGet": self._config_global_get,
            **{op: functools.partial(self._kick, kind) for op, kind in KICK_OPERATIONS.items()},
        }
        app = web.Application()
        registered = set()
        for route, ops in self.spec["paths"].items():
            for method, op in ops.items():
                op_id = op.get("operationId")
                if op_id not in handlers:
                    continue
                aiohttp_route = re.sub(r"\{(\w+)\}", r"{\1:.+}", route)
                body_ref = self.validator.request_body_ref(route, method)
                app.router.add_route(
                    method.upper(),
                    aiohttp_route,
                    self._wrap(op_id, body_ref, handlers[op_id]),
                )
                registered.add(op_id)
        missing = set(handlers) - registered
        if missing:
            raise RuntimeError(f"operations not found in the spec: {sorted(missing)}")
        return app

    def _take_fault(self, operation_id: str) -> _Fault | None:
        for fault in self._faults:
            if fault.operation in (None, operation_id) and fault.remaining > 0:
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _wrap(self, operation_id: str, body_ref: str | None, handler: Handler) -> RouteHandler:
        async def wrapped(request: web.Request) -> web.Response:
            raw = await request.read()
            record = RecordedRequest(
                request.method, request.path, operation_id, dict(request.query), None
            )
            self.requests.append(record)
            self._request_seen.set()
            try:
                response = await self._answer(request, raw, body_ref, handler, record)
                record.status = response.status
                return response
            finally:
                self._answered.set()

        return wrapped

    async def _answer(
        self,
        request: web.Request,
        raw: bytes,
        body_ref: str | None,
        handler: Handler,
        record: RecordedRequest,
    ) -> web.Response:
        if self.auth is not None and not await self._authenticated(request):
            return _error(401, "authentication error")
        fault = self._take_fault(record.operation_id)
        if fault is not None:
            if fault.kind == "drop":
                if request.transport is not None:
                    request.transport.abort()
                return web.Response(status=599)
            if fault.kind == "status":
                return _error(fault.status, fault.message)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), fault.delay)
            if self._stopping.is_set():
                if request.transport is not None:
                    request.transport.abort()
                return web.Response(status=599)
        body: Any = None
        if body_ref is not None:
            try:
                body = json.loads(raw) if raw else None
            except ValueError as exc:
                return _error(400, f"invalid JSON: {exc}")
            record.body = body
            problems = self.validator.errors(body_ref, body)
            if problems:
                return _error(400, "; ".join(problems))
        return await handler(request, body)

    # -- pagination (as internal/api/paginate.go) --------------------------------------

    @staticmethod
    def _paginate(request: web.Request, items: list[Json]) -> Json | web.Response:
        try:
            per_page = int(request.query.get("itemsPerPage", "100"))
            page = int(request.query.get("page", "0"))
        except ValueError as exc:
            return _error(400, str(exc))
        if per_page <= 0 or page < 0:
            return _error(400, "invalid items per page" if per_page <= 0 else "invalid page")
        page_count = (len(items) + per_page - 1) // per_page
        chunk = items[page * per_page : (page + 1) * per_page]
        return {"itemCount": len(items), "pageCount": page_count, "items": chunk}

    def _list_response(self, request: web.Request, items: list[Json]) -> web.Response:
        result = self._paginate(request, items)
        if isinstance(result, web.Response):
            return result
        return web.json_response(result)

    # -- handlers ----------------------------------------------------------------------

    async def _info(self, request: web.Request, body: Any) -> web.Response:
        return web.json_response({"version": self.version, "started": self.started_at})

    async def _config_paths_list(self, request: web.Request, body: Any) -> web.Response:
        items = [self.config_paths[k] for k in sorted(self.config_paths)]
        return self._list_response(request, items)

    async def _config_paths_get(self, request: web.Request, body: Any) -> web.Response:
        conf = self.config_paths.get(request.match_info["name"])
        if conf is None:
            return _error(404, "path configuration not found")
        return web.json_response(conf)

    def _store(self, name: str, conf: Json, old: Json | None) -> web.Response:
        """Validate and store at once; the running path follows ``apply_delay`` later
        (internal/api/api.go answers before internal/core/core.go reloads the paths)."""
        problem = rules.conf_error(conf, playback=self.playback)
        if problem is not None:
            return _error(400, problem)
        self.config_paths[name] = rules.echo_conf(conf)
        self._later(self.apply_delay, lambda: self._apply_conf(name, old))
        return _ok()

    async def _config_paths_add(self, request: web.Request, body: Json) -> web.Response:
        name = request.match_info["name"]
        problem = rules.path_name_error(name)
        if problem is not None:
            return _error(400, f"invalid path name: {problem} ({name})")
        if name in self.config_paths:
            return _error(400, "path already exists")
        return self._store(name, {**self.path_defaults, **body, "name": name}, None)

    async def _config_paths_patch(self, request: web.Request, body: Json) -> web.Response:
        name = request.match_info["name"]
        if name not in self.config_paths:
            return _error(404, "path not found")
        old = self.config_paths[name]
        return self._store(name, {**old, **body, "name": name}, old)

    async def _config_paths_replace(self, request: web.Request, body: Json) -> web.Response:
        # internal/api/api.go, onConfigPathsReplace: a missing path is created (no 404).
        name = request.match_info["name"]
        problem = rules.path_name_error(name)
        if problem is not None:
            return _error(400, f"invalid path name: {problem} ({name})")
        old = self.config_paths.get(name)
        return self._store(name, {**self.path_defaults, **body, "name": name}, old)

    async def _config_paths_delete(self, request: web.Request, body: Any) -> web.Response:
        name = request.match_info["name"]
        if self.config_paths.pop(name, None) is None:
            return _error(404, "path not found")
        self._later(self.apply_delay, lambda: self._close_path(name))
        return _ok()

    def _runtime_path(self, name: str) -> Json:
        state = self.path_states.get(name, PathState())
        ready_time = state.ready_time if state.ready else None
        readers = state.readers + len(self.rtsp_readers.get(name, ()))
        return {
            "name": name,
            "confName": name,
            "source": {"type": state.source_type, "id": ""} if state.ready else None,
            "available": state.ready,
            "availableTime": ready_time,
            "online": state.ready,
            "onlineTime": ready_time,
            "ready": state.ready,
            "readyTime": ready_time,
            "tracks": list(state.tracks) if state.ready else [],
            "tracks2": [{"codec": t, "codecProps": None} for t in state.tracks]
            if state.ready
            else [],
            "bytesReceived": state.bytes_received,
            "bytesSent": state.bytes_sent,
            "inboundBytes": state.bytes_received,
            "outboundBytes": state.bytes_sent,
            "inboundFramesInError": 0,
            "readers": [{"type": "rtspSession", "id": f"reader-{i}"} for i in range(readers)],
        }

    def _runtime_names(self) -> list[str]:
        return sorted(
            n for n in self.config_paths if not n.startswith("~") and n not in ("all", "all_others")
        )

    async def _paths_list(self, request: web.Request, body: Any) -> web.Response:
        items = [self._runtime_path(n) for n in self._runtime_names()]
        return self._list_response(request, items)

    async def _paths_get(self, request: web.Request, body: Any) -> web.Response:
        name = request.match_info["name"]
        if name not in self._runtime_names():
            return _error(404, "path not found")
        return web.json_response(self._runtime_path(name))

    def _recording(self, name: str) -> Json:
        return {"name": name, "segments": [{"start": s} for s in self.recordings[name]]}

    async def _recordings_list(self, request: web.Request, body: Any) -> web.Response:
        items = [self._recording(n) for n in sorted(self.recordings)]
        return self._list_response(request, items)

    async def _recordings_get(self, request: web.Request, body: Any) -> web.Response:
        name = request.match_info["name"]
        if name not in self.recordings:
            return _error(404, "path not found")
        return web.json_response(self._recording(name))

    # -- authentication, global configuration, sessions --------------------------------

    async def _authenticated(self, request: web.Request) -> bool:
        assert self.auth is not None
        if self._auth_session is None or self._auth_session.closed:
            self._auth_session = aiohttp.ClientSession()
        return await self.auth.authenticate(
            self._auth_session,
            action="api",
            ip=request.remote or "",
            creds=http_credentials(request.headers.get("Authorization")),
            query=request.query_string,
        )

    async def _config_global_get(self, request: web.Request, body: Any) -> web.Response:
        return web.json_response(self.global_conf)

    async def _kick(self, kind: str, request: web.Request, body: Any) -> web.Response:
        session_id = request.match_info["id"]
        if session_id not in self.sessions.get(kind, set()):
            return _error(404, "session not found")
        self.sessions[kind].discard(session_id)
        self.kicked.append((kind, session_id))
        return _ok()
