"""HTTP server on 8003: health probes, Prometheus metrics, downloads, browser client.

Every response carries security headers. Other components add routes to `app.router`
before `start()` (e.g. file downloads). The server itself is `transport.web` (h11).
"""

from __future__ import annotations

import hmac
import logging
import sys
from pathlib import Path
from typing import Any

from camera_service import __version__
from camera_service.config import HttpConfig
from camera_service.health import Health, utc_now_iso
from camera_service.metrics import Metrics
from camera_service.transport import web
from camera_service.transport.admission import AddressCap, RateLimitedLog, WaitingHeads
from camera_service.transport.web.server import Server

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_S = 2.0  # requests still running at stop() get this long


CLIENT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob: http: https:; connect-src 'self' ws: wss: http: https:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
API_CSP = "default-src 'none'; frame-ancestors 'none'"
COMPONENT_ALIASES = {"cameras": "camera_monitor", "websocket": "websocket_server"}
# The checkout's client/ (running from source or an editable install); a wheel installs a copy
# under <prefix>/share/camera-service/client (pyproject.toml's data-files).
SOURCE_CLIENT_DIR = Path(__file__).resolve().parent.parent.parent / "client"
INSTALLED_CLIENT_DIR = Path(sys.prefix) / "share" / "camera-service" / "client"


def bundled_client_dir() -> Path:
    """Where the browser client is when `http.client_dir` is not set."""
    if (SOURCE_CLIENT_DIR / "index.html").is_file():
        return SOURCE_CLIENT_DIR
    return INSTALLED_CLIENT_DIR


def security_headers(request: web.Request | None, response: web.StreamResponse) -> None:
    """On every response, error answers included."""
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Cache-Control", "no-store")
    path = request.path if request is not None else "/health"
    is_client = not path.startswith(("/health", "/metrics", "/files", "/mediamtx"))
    headers.setdefault("Content-Security-Policy", CLIENT_CSP if is_client else API_CSP)


class HttpServer:
    def __init__(self, config: HttpConfig, health: Health, metrics: Metrics) -> None:
        self.config = config
        self.health = health
        self.metrics = metrics
        self.app = web.Application()
        self.cap = AddressCap(config.max_connections_per_address, config.max_connections)
        self.waiting = WaitingHeads()
        self._limited_log = RateLimitedLog(log)
        self._server: Server | None = None
        self._add_core_routes()

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.port

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
        if not self.config.serve_client:
            return
        directory = self.config.client_dir or bundled_client_dir()
        if not (directory / "index.html").is_file():
            log.warning("browser client not served: no index.html in %s", directory)
            return
        index = directory / "index.html"

        async def serve_index(request: web.Request) -> web.StreamResponse:
            return web.FileResponse(index)

        self.app.router.add_get("/", serve_index)
        self.app.router.add_static("/", directory, show_index=False, follow_symlinks=False)

    async def start(self) -> None:
        self._server = Server(
            self.app.router,
            cap=self.cap,
            waiting=self.waiting,
            header_timeout=self.config.header_timeout,
            body_timeout=self.config.body_timeout,
            on_refused=self._dropped,
            on_prepare=security_headers,
            access_log=logging.getLogger("http.access"),
        )
        await self._server.start(self.config.host, self.config.port)

    def _dropped(self, address: str, reason: str) -> None:
        self._limited_log.warning(
            f"http-{reason}", "HTTP connection from %s dropped (%s)", address, reason
        )

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(SHUTDOWN_TIMEOUT_S)

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
