"""HTTP server on 8003 (aiohttp): health probes, Prometheus metrics, downloads, browser client.

Every response carries security headers. Other components add routes through `routes`
before `start()` (e.g. file downloads).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from camera_service import __version__
from camera_service.config import HttpConfig
from camera_service.health import Health, utc_now_iso
from camera_service.logging import redact
from camera_service.metrics import Metrics
from camera_service.transport.admission import AddressCap, RateLimitedLog
from camera_service.transport.http_guard import GuardedSite, WaitingHeads, body_deadline

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_S = 2.0  # requests still running at stop() get this long

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CLIENT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob: http: https:; connect-src 'self' ws: wss: http: https:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
API_CSP = "default-src 'none'; frame-ancestors 'none'"
COMPONENT_ALIASES = {"cameras": "camera_monitor", "websocket": "websocket_server"}
DEFAULT_CLIENT_DIR = Path(__file__).resolve().parent.parent.parent / "client"


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Cache-Control", "no-store")
    is_client = not request.path.startswith(("/health", "/metrics", "/files", "/mediamtx"))
    headers.setdefault("Content-Security-Policy", CLIENT_CSP if is_client else API_CSP)
    if isinstance(response, web.HTTPException):
        raise response
    return response


class AccessLogger(AbstractAccessLogger):
    """aiohttp access log with query strings redacted (download tokens live there)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %s",
            request.method,
            redact(request.path_qs),
            response.status,
            extra={"remote": request.remote, "ms": round(time * 1000, 2)},
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


class HttpServer:
    def __init__(self, config: HttpConfig, health: Health, metrics: Metrics) -> None:
        self.config = config
        self.health = health
        self.metrics = metrics
        self.app = web.Application(
            middlewares=[security_headers, body_deadline(config.body_timeout)]
        )
        self._runner: web.AppRunner | None = None
        self._site: GuardedSite | None = None
        self.cap = AddressCap(config.max_connections_per_address, config.max_connections)
        self.waiting = WaitingHeads()
        self._limited_log = RateLimitedLog(log)
        self._add_core_routes()

    @property
    def port(self) -> int:
        assert self._site is not None and self._site._server is not None
        sockets = getattr(self._site._server, "sockets", [])
        return int(sockets[0].getsockname()[1])

    def _add_core_routes(self) -> None:
        router = self.app.router
        router.add_get("/health", self.health_summary)
        router.add_get("/health/live", self.live)
        router.add_get("/health/ready", self.ready)
        router.add_get("/health/system", self.system)
        router.add_get("/health/{component}", self.component)
        router.add_get("/metrics", self.prometheus)

    def add_client_routes(self) -> None:
        """Serve the browser client at / (call last: the static route matches broadly)."""
        directory = self.config.client_dir or DEFAULT_CLIENT_DIR
        if not self.config.serve_client or not (directory / "index.html").is_file():
            return
        index = directory / "index.html"

        async def serve_index(request: web.Request) -> web.StreamResponse:
            return web.FileResponse(index)

        self.app.router.add_get("/", serve_index)
        self.app.router.add_static("/", directory, show_index=False, follow_symlinks=False)

    async def start(self) -> None:
        self._runner = web.AppRunner(
            self.app,
            access_log_class=AccessLogger,
            access_log=logging.getLogger("http.access"),
            handle_signals=False,
            # Idle or half-sent next requests on kept-alive connections close after this
            # (the first head is timed by GuardedSite); a slow download delays stop() 2 s.
            keepalive_timeout=self.config.header_timeout,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        )
        await self._runner.setup()
        self._site = GuardedSite(
            self._runner,
            self.config.host,
            self.config.port,
            self.cap,
            self.config.header_timeout,
            self._dropped,
            self.waiting,
        )
        await self._site.start()

    def _dropped(self, address: str, reason: str) -> None:
        self._limited_log.warning(
            f"http-{reason}", "HTTP connection from %s dropped (%s)", address, reason
        )

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _status_body(self, status: str) -> dict[str, Any]:
        return {
            "status": status,
            "timestamp": utc_now_iso(),
            "version": __version__,
            "uptime": round(self.metrics.uptime(), 3),
        }

    async def health_summary(self, request: web.Request) -> web.Response:
        overall = self.health.overall()
        code = 503 if overall == "unhealthy" else 200
        body = self._status_body(overall)
        if overall != "healthy":
            body["reasons"] = self.health.problems()
        return web.json_response(body, status=code)

    async def live(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "alive", "timestamp": utc_now_iso()})

    async def ready(self, request: web.Request) -> web.Response:
        missing = self.health.not_ready()
        if missing:
            body = {"status": "not_ready", "timestamp": utc_now_iso(), "details": missing}
            return web.json_response(body, status=503)
        return web.json_response({"status": "ready", "timestamp": utc_now_iso()})

    async def system(self, request: web.Request) -> web.Response:
        components = {
            name: {"status": c.status, "details": c.details}
            for name, c in self.health.components().items()
        }
        overall = self.health.overall()
        body = {"status": overall, "timestamp": utc_now_iso(), "components": components}
        body["details"] = self.metrics.system()
        return web.json_response(body, status=503 if overall == "unhealthy" else 200)

    async def component(self, request: web.Request) -> web.Response:
        name = request.match_info["component"]
        name = COMPONENT_ALIASES.get(name, name)
        status = self.health.component(name)
        if status is None:
            raise web.HTTPNotFound(text="unknown component")
        body = {"status": status.status, "timestamp": utc_now_iso(), "details": status.details}
        return web.json_response(body, status=503 if status.status == "unhealthy" else 200)

    async def prometheus(self, request: web.Request) -> web.Response:
        secret = self.config.metrics_auth
        if secret is not None:
            expected = f"Bearer {secret.get_secret_value()}"
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), expected.encode()):
                raise web.HTTPUnauthorized(headers={"WWW-Authenticate": "Bearer"})
        return web.Response(
            body=self.metrics.prometheus_text(),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )
