"""``POST /mediamtx/auth`` on the HTTP port: MediaMTX's ``authHTTPAddress``.

MediaMTX calls it for every session start (RTSP DESCRIBE/SETUP/ANNOUNCE, every HLS session,
every WebRTC offer) and every API request, so it answers from memory:

* Callers other than loopback and the configured MediaMTX addresses get 403.
* The body (at most 64 KiB of JSON) is decided by
  :class:`~camera_service.auth.stream_access.AccessPolicy`: 200 allows, 401 denies.
* The API key store is re-read only when the request carries an API key or a stream
  token, and then in a worker thread (a ``stat`` of the key file), so a key revoked with
  ``camera-service keys revoke`` is refused at the next session start and the event loop
  never waits on the disk.
* Denials are audited (who, ip, path, action, protocol, reason) and, when credentials were
  presented, count toward the failed-auth limit of the client address (``ip`` of the body).
* Sessions opened with an API key (directly or through a stream token issued to it) are
  remembered (bounded), so that revoking the key can kick them through MediaMTX's API.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable

from camera_service.auth.api_keys import ApiKeyStore
from camera_service.auth.service import FailedAuthLimiter
from camera_service.auth.stream_access import (
    AccessPolicy,
    AccessRequest,
    BadAccessRequest,
    Decision,
    is_loopback,
)
from camera_service.logging import AUDIT_LOGGER, audit
from camera_service.metrics import Metrics
from camera_service.transport import web

log = logging.getLogger(__name__)

ROUTE = "/mediamtx/auth"
MAX_BODY_BYTES = 64 * 1024
LEDGER_SIZE = 4096


class SessionLedger:
    """MediaMTX sessions started with an API key: ``(key id, protocol, session id)``.

    Bounded: beyond ``limit`` entries the oldest are forgotten (those sessions then just
    run until they end, like sessions of a JWT)."""

    def __init__(self, limit: int = LEDGER_SIZE) -> None:
        self.limit = limit
        self._entries: OrderedDict[tuple[str, str, str], None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def record(self, key_id: str, protocol: str, session_id: str) -> None:
        entry = (key_id, protocol, session_id)
        self._entries[entry] = None
        self._entries.move_to_end(entry)
        while len(self._entries) > self.limit:
            self._entries.popitem(last=False)

    def take_revoked(self, is_active: Callable[[str], bool]) -> list[tuple[str, str]]:
        """Remove and return ``(protocol, session id)`` of sessions whose key is revoked."""
        gone = [entry for entry in self._entries if not is_active(entry[0])]
        for entry in gone:
            del self._entries[entry]
        return [(protocol, session_id) for _, protocol, session_id in gone]


def _normalise(address: str) -> str:
    return address[7:] if address.startswith("::ffff:") else address


class StreamAuthEndpoint:
    def __init__(
        self,
        policy: AccessPolicy,
        limiter: FailedAuthLimiter,
        keys: ApiKeyStore,
        *,
        allowed_clients: Iterable[str] = (),
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.policy = policy
        self.limiter = limiter
        self.keys = keys
        self.allowed_clients = frozenset(_normalise(a) for a in allowed_clients)
        self.metrics = metrics
        self.ledger = SessionLedger()
        #: Seconds spent in the handler for the most recent calls (bounded), for benchmarks.
        self.recent: deque[float] = deque(maxlen=4096)
        self._clock = clock

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(ROUTE, self.handle)

    def caller_allowed(self, remote: str | None) -> bool:
        if not remote:
            return False
        return is_loopback(remote) or _normalise(remote) in self.allowed_clients

    async def handle(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        try:
            return await self._handle(request)
        finally:
            elapsed = time.perf_counter() - started
            self.recent.append(elapsed)
            if self.metrics is not None:
                self.metrics.stream_auth_latency(elapsed)

    async def _handle(self, request: web.Request) -> web.Response:
        if not self.caller_allowed(request.remote):
            audit("mediamtx auth call refused", remote=request.remote, reason="not MediaMTX")
            return web.Response(status=403, text="only MediaMTX may call this endpoint\n")
        try:
            req = await self._read(request)
        except BadAccessRequest as exc:
            return web.Response(status=400, text=f"{exc}\n")
        except web.HTTPRequestEntityTooLarge:
            return web.Response(status=413, text=f"body larger than {MAX_BODY_BYTES} bytes\n")
        if req.needs_key_store():
            await asyncio.to_thread(self.keys.refresh_if_changed)
        ip = req.ip or request.remote or ""
        limited = bool(self.limiter.retry_after_ms(ip))
        decision = self.policy.decide(req, self._clock(), rate_limited=limited)
        if self.metrics is not None:
            self.metrics.stream_auth(req.action, decision.allowed)
        if decision.allowed:
            if decision.key_id is not None and req.id:
                self.ledger.record(decision.key_id, req.protocol, req.id)
            return web.Response(status=200)
        self._denied(req, ip, decision)
        return web.Response(status=401, text=f"{decision.reason}\n")

    async def _read(self, request: web.Request) -> AccessRequest:
        # At most MAX_BODY_BYTES: a larger declared length is refused before reading any.
        raw = await request.read(MAX_BODY_BYTES)
        try:
            body = json.loads(raw)
        except ValueError:
            raise BadAccessRequest("body is not JSON") from None
        return AccessRequest.from_body(body)

    def _denied(self, req: AccessRequest, ip: str, decision: Decision) -> None:
        if decision.failure:
            self.limiter.record_failure(ip)
        fields = {
            "audit": True,
            "who": decision.subject or req.user or "anonymous",
            "ip": ip,
            "path": req.path,
            "action": req.action,
            "protocol": req.protocol,
            "credential": decision.kind,
            "reason": decision.reason,
            "counted": decision.failure,
        }
        logging.getLogger(AUDIT_LOGGER).info("stream access denied", extra=fields)
