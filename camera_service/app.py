"""Composition root: the only place that knows every component. Builds them from the config,
starts them in order, stops them in reverse, and handles SIGTERM/SIGINT/SIGHUP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from camera_service import __version__
from camera_service import logging as service_logging
from camera_service.auth.api_keys import ApiKeyStore
from camera_service.auth.jwt import JwtAuthority, load_or_create_secret
from camera_service.auth.service import Authenticator, FailedAuthLimiter
from camera_service.config import Config, ConfigError, load_config
from camera_service.events import DEFAULT_TOPICS, Event, EventBus
from camera_service.health import ComponentStatus, Health
from camera_service.metrics import Metrics
from camera_service.rpc.dispatch import Dispatcher
from camera_service.rpc.methods import auth as auth_methods
from camera_service.rpc.methods import events as event_methods
from camera_service.rpc.methods import system as system_methods
from camera_service.rpc.registry import Registry
from camera_service.rpc.session import Session
from camera_service.sdnotify import SystemdNotifier, watchdog_loop
from camera_service.transport.http import HttpServer
from camera_service.transport.websocket import WebSocketServer

log = logging.getLogger(__name__)

SHUTDOWN_BUDGET_S = 8.0
SESSION_SWEEP_INTERVAL_S = 1.0
SUPPORTED_FORMATS = {"snapshot": ["jpg", "png"], "recording": ["fmp4", "mp4", "mkv"]}


class StartupError(Exception):
    """The daemon cannot start; the message is the one log line an operator needs."""


@dataclass
class ReloadReport:
    applied: list[str]
    needs_restart: list[str]


def secret_bytes(config: Config) -> bytes:
    if config.auth.jwt_secret is not None:
        return config.auth.jwt_secret.get_secret_value().encode()
    return load_or_create_secret(config.jwt_secret_file)


class Application:
    def __init__(self, config: Config, config_path: Path | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.metrics = Metrics()
        self.bus = EventBus()
        self.health = Health()
        self.registry = Registry()
        self._prepare_state_dir()
        self.jwt = JwtAuthority(secret_bytes(config))
        self.keys = ApiKeyStore(config.api_keys_file)
        self.authenticator = Authenticator(
            self.jwt,
            self.keys,
            FailedAuthLimiter(config.auth.failed_auth_limit, config.auth.failed_auth_window),
        )
        self.dispatcher = Dispatcher(
            self.registry, self.authenticator, self.metrics, config.server.max_batch
        )
        self.ws = WebSocketServer(config.server, self.dispatcher, self.bus, self.metrics)
        self.http = HttpServer(config.http, self.health, self.metrics)
        self.notifier = SystemdNotifier.from_env()
        self.stop_requested = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self.listening = asyncio.Event()
        self.after_start: list[Callable[[], None]] = []
        self._register_methods()
        self._register_health()

    # --- construction -------------------------------------------------------------------

    def _prepare_state_dir(self) -> None:
        state = self.config.storage.state_dir
        try:
            state.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StartupError(f"cannot create state directory {state}: {exc.strerror}") from exc

    def _register_methods(self) -> None:
        system_methods.register(
            self.registry,
            system_methods.SystemDeps(
                registry=self.registry,
                health=self.health,
                metrics=self.metrics,
                system_status=self.system_status,
                capabilities=self.capabilities,
                supported_formats=SUPPORTED_FORMATS,
                max_cameras=64,
                metric_sections={},
            ),
        )
        auth_methods.register(self.registry, self.authenticator, self.subscribe_defaults)
        event_methods.register(self.registry, self.bus)

    def _register_health(self) -> None:
        self.health.register("websocket_server", self._websocket_health)
        self.health.require_ready("websocket_listening", self.listening)

    def _websocket_health(self) -> ComponentStatus:
        if not self.listening.is_set():
            return ComponentStatus("starting", {"listening": False})
        return ComponentStatus(
            "healthy",
            {
                "listening": True,
                "connections": self.metrics.open_connections,
                "port": self.config.server.port,
            },
        )

    # --- providers used by methods --------------------------------------------------------

    def subscribe_defaults(self, session: Session) -> None:
        self.bus.subscribe(session, DEFAULT_TOPICS)

    def capabilities(self) -> list[str]:
        return ["json-rpc-2.0", "batches", "notifications", "api-keys", "jwt"]

    def system_status(self) -> dict[str, Any]:
        return {
            "status": "ready",
            "message": "no camera discovery configured",
            "available_cameras": 0,
            "discovery_active": False,
        }

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        await self._listen(
            "WebSocket", self.config.server.host, self.config.server.port, self.ws.start
        )
        self.listening.set()
        await self._listen("HTTP", self.config.http.host, self.config.http.port, self._start_http)
        self._tasks.append(asyncio.create_task(self._sweep_sessions(), name="session-sweep"))
        self._tasks.append(asyncio.create_task(watchdog_loop(self.notifier), name="watchdog"))
        self.publish_system("system.startup", "started", f"camera-service {__version__} started")
        log.info(
            "camera-service started",
            extra={"ws_port": self.ws.port, "http_port": self.http.port, "version": __version__},
        )
        for hook in self.after_start:
            hook()

    async def _start_http(self) -> None:
        self.http.add_client_routes()
        await self.http.start()

    async def _listen(self, what: str, host: str, port: int, starter: Callable[[], Any]) -> None:
        try:
            await starter()
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise StartupError(f"cannot listen for {what} on {host}:{port}: {reason}") from None

    async def _notify_ready(self) -> None:
        await self.health.wait_ready()
        self.notifier.ready(f"listening on :{self.ws.port} (ws) and :{self.http.port} (http)")

    async def stop(self) -> None:
        """Stop accepting, finish in-flight calls, close sockets with 1001."""
        self.notifier.stopping("shutting down")
        self.ws.stop_accepting()
        self.publish_system("system.shutdown", "stopping", "camera-service is shutting down")
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.ws.stop(timeout=SHUTDOWN_BUDGET_S / 2)
        await self.http.stop()
        log.info("camera-service stopped")

    def publish_system(self, topic: str, status: str, message: str) -> None:
        params = {"status": status, "message": message}
        self.bus.publish(Event(topic, "system_status_update", params))

    async def _sweep_sessions(self) -> None:
        """Drop notifications to sessions whose JWT expired or whose key was revoked."""
        while True:
            await asyncio.sleep(SESSION_SWEEP_INTERVAL_S)
            self.keys.refresh_if_changed()
            now = time.time()
            for session in list(self.ws.sessions.values()):
                identity = session.identity
                if identity is None:
                    continue
                if identity.expired(now) or (
                    identity.key_id is not None and not self.keys.is_active(identity.key_id)
                ):
                    self.bus.drop(session.subscriber_id)

    # --- signals and reload ---------------------------------------------------------------

    def reload(self) -> ReloadReport:
        """SIGHUP: apply what can change safely at run time, report the rest."""
        applied: list[str] = []
        needs_restart: list[str] = []
        self.keys.reload()
        applied.append("auth.api_keys")
        try:
            fresh, _ = load_config(self.config_path)
        except ConfigError as exc:
            log.error("reload: configuration rejected, keeping the running one: %s", exc)
            return ReloadReport(applied, needs_restart)
        if fresh.logging.level != self.config.logging.level:
            service_logging.set_level(fresh.logging.level)
            applied.append("logging.level")
        if fresh.server.allowed_origins != self.config.server.allowed_origins:
            self.ws.config = self.ws.config.model_copy(
                update={"allowed_origins": fresh.server.allowed_origins}
            )
            applied.append("server.allowed_origins")
        needs_restart = _changed_sections(self.config, fresh, ignore={"logging", "server"})
        if fresh.server.model_copy(update={"allowed_origins": []}) != self.config.server.model_copy(
            update={"allowed_origins": []}
        ):
            needs_restart.append("server")
        self.config = fresh.model_copy(update={"server": self.ws.config})
        log.info(
            "configuration reloaded", extra={"applied": applied, "needs_restart": needs_restart}
        )
        return ReloadReport(applied, needs_restart)

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop_requested.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)

    async def run(self) -> None:
        self.install_signal_handlers()
        await self.start()
        self._tasks.append(asyncio.create_task(self._notify_ready(), name="sd-ready"))
        try:
            await self.stop_requested.wait()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.stop(), SHUTDOWN_BUDGET_S)


def _changed_sections(old: Config, new: Config, ignore: set[str]) -> list[str]:
    return [
        name
        for name in Config.model_fields
        if name not in ignore and getattr(old, name) != getattr(new, name)
    ]
