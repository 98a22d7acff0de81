"""Dispatch: envelope → rate limit → method lookup → auth and role → params → handler → response.

Every failure becomes a catalog error; anything unexpected becomes -32603 with a request id
that is also logged. Notifications (no id) run but never produce a response.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from typing import Any, Never

from pydantic import BaseModel, ValidationError

from camera_service.auth.identity import AuthError, Identity
from camera_service.auth.roles import allows
from camera_service.auth.service import Authenticator
from camera_service.logging import audit, request_id_var
from camera_service.metrics import Metrics
from camera_service.rpc import protocol
from camera_service.rpc.errors import (
    AuthenticationFailed,
    InternalError,
    InvalidParams,
    InvalidRequest,
    MethodNotFound,
    PermissionDenied,
    RateLimited,
    RpcError,
)
from camera_service.rpc.registry import MethodSpec, Params, Registry
from camera_service.rpc.session import CallContext, Session
from camera_service.rpc.storage_errors import storage_rpc_error

log = logging.getLogger(__name__)

AUTH_TOKEN_PARAM = "auth_token"


def params_error(exc: ValidationError) -> InvalidParams:
    first = exc.errors()[0]
    param = ".".join(str(p) for p in first["loc"]) or "params"
    hints = {
        "extra_forbidden": "remove the unknown member; see rpc.discover for accepted params",
        "missing": "this member is required",
    }
    hint = hints.get(first["type"], "see rpc.discover for the accepted values")
    return InvalidParams(param, first["msg"], hint)


def _dump(result: Any) -> Any:
    if isinstance(result, BaseModel):
        return result.model_dump(mode="json", exclude_none=False)
    if isinstance(result, list):
        return [_dump(item) for item in result]
    return result


class UnauthenticatedBatchTooLarge(InvalidRequest):
    def __init__(self, limit: int) -> None:
        super().__init__(
            f"the batch answer reached {limit} bytes before authentication, so this entry was "
            "not run: authenticate first (an authenticate entry may lead the batch) or send "
            "fewer entries"
        )


class Dispatcher:
    def __init__(
        self,
        registry: Registry,
        authenticator: Authenticator,
        metrics: Metrics,
        max_batch: int,
        unauthenticated_batch_bytes: int | None = None,
    ) -> None:
        self.registry = registry
        self.auth = authenticator
        self.metrics = metrics
        self.max_batch = max_batch
        self.unauthenticated_batch_bytes = unauthenticated_batch_bytes
        # Request ids: a per-process random prefix and a counter (uuid4 costs ~2 µs a call).
        prefix = uuid.uuid4().hex[:8]
        self._request_ids = (f"{prefix}{n:08x}" for n in itertools.count(1))
        self._no_params: dict[type[Params], Params] = {}

    def parse(self, frame: str | bytes) -> protocol.Parsed | protocol.Invalid:
        return protocol.parse(frame, self.max_batch)

    def is_inline(self, parsed: protocol.Parsed | protocol.Invalid) -> bool:
        """True when answering never awaits I/O: the transport can skip a task for it."""
        if isinstance(parsed, protocol.Invalid):
            return True
        for entry in parsed.entries:
            if isinstance(entry, protocol.Request):
                spec = self.registry.get(entry.method)
                if spec is not None and not spec.inline:
                    return False
        return True

    async def handle_frame(self, session: Session, frame: str | bytes) -> str | None:
        """Answer one WebSocket frame; None when nothing is to be sent back."""
        return await self.handle_parsed(session, self.parse(frame))

    async def handle_parsed(
        self, session: Session, parsed: protocol.Parsed | protocol.Invalid
    ) -> str | None:
        if isinstance(parsed, protocol.Invalid):
            return self._encoded(protocol.error_response(parsed.id, parsed.error))
        if not parsed.is_batch:
            response = await self.handle_entry(session, parsed.entries[0])
            return None if response is None else self._encoded(response)
        if not session.proven and self.unauthenticated_batch_bytes is not None:
            return await self._unproven_batch(session, parsed.entries)
        answers = await asyncio.gather(*(self.handle_entry(session, e) for e in parsed.entries))
        # Each entry is encoded on its own, so one that cannot be encoded spoils only itself.
        parts = [self._encoded(answer) for answer in answers if answer is not None]
        return f"[{','.join(parts)}]" if parts else None

    async def _unproven_batch(self, session: Session, entries: list[protocol.Entry]) -> str | None:
        """A batch before any credential was accepted: no fan-out. Entries run one after
        another, and once the answer holds `unauthenticated_batch_bytes` the remaining
        entries are not run (each answered -32600 with a hint) until the connection has
        authenticated, e.g. by an `authenticate` entry earlier in the same batch."""
        limit = self.unauthenticated_batch_bytes
        assert limit is not None
        parts: list[str] = []
        size = 2
        for entry in entries:
            if not session.proven and size >= limit:
                if isinstance(entry, protocol.Request) and entry.is_notification:
                    continue
                answer: dict[str, Any] | None = protocol.error_response(
                    entry.id, UnauthenticatedBatchTooLarge(limit)
                )
            else:
                answer = await self.handle_entry(session, entry)
            if answer is not None:
                part = self._encoded(answer)
                parts.append(part)
                size += len(part) + 1
        return f"[{','.join(parts)}]" if parts else None

    def _encoded(self, response: dict[str, Any]) -> str:
        """The response as text that is valid UTF-8; an answer that is not (a lone surrogate
        that escaped validation) becomes -32603 with the same id where that id is clean."""
        text = protocol.encode_message(response)
        if not protocol.has_surrogate(text):
            return text
        request_id = next(self._request_ids)
        log.error(
            "answer not encodable as UTF-8 (lone surrogate)", extra={"request_id": request_id}
        )
        echo = response.get("id")
        if isinstance(echo, str) and protocol.has_surrogate(echo):
            echo = None
        return protocol.encode(protocol.error_response(echo, InternalError(request_id)))

    async def handle_entry(self, session: Session, entry: protocol.Entry) -> dict[str, Any] | None:
        if isinstance(entry, protocol.Invalid):
            return protocol.error_response(entry.id, entry.error)
        try:
            result = await self.call(session, entry)
        except RpcError as error:
            return None if entry.is_notification else protocol.error_response(entry.id, error)
        return None if entry.is_notification else protocol.result_response(entry.id, result)

    async def call(self, session: Session, request: protocol.Request) -> Any:
        request_id = next(self._request_ids)
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        error_code: int | None = None
        spec = self.registry.get(request.method)
        try:
            self._check_rate(session)
            if spec is None:
                raise MethodNotFound(request.method)
            return await self._invoke(spec, session, request, request_id)
        except RpcError as error:
            error_code = error.code
            raise
        finally:
            elapsed = time.perf_counter() - started
            self.metrics.observe(spec.name if spec else "(unknown)", elapsed, error_code)
            request_id_var.reset(token)

    def _check_rate(self, session: Session) -> None:
        if session.bucket is not None:
            wait_ms = session.bucket.take()
            if wait_ms:
                raise RateLimited(wait_ms)

    async def _invoke(
        self, spec: MethodSpec, session: Session, request: protocol.Request, request_id: str
    ) -> Any:
        raw = self._params_dict(request.params)
        credential = None
        if AUTH_TOKEN_PARAM not in spec.param_names:
            credential = raw.pop(AUTH_TOKEN_PARAM, None)
        else:
            declared = raw.get(AUTH_TOKEN_PARAM)
            if isinstance(declared, str) and protocol.has_surrogate(declared):
                self._credential_refused(session, "credentials are not valid Unicode text")
        identity = self._identity_for(spec, session, credential)
        bad = protocol.surrogate_path(raw) if request.escaped else None
        if bad is not None:
            raise InvalidParams(bad, "not valid Unicode text (lone surrogate)", "send valid text")
        params = self._validated(spec, raw)
        ctx = CallContext(session=session, request_id=request_id, identity=identity)
        if not spec.audited:
            return _dump(await self._run(spec, ctx, params))
        return await self._run_audited(spec, ctx, params)

    async def _run(self, spec: MethodSpec, ctx: CallContext, params: Any) -> Any:
        try:
            return await spec.handler(ctx, params)
        except RpcError:
            raise
        except Exception as exc:
            if (storage := storage_rpc_error(exc)) is not None:
                log.warning("%s: storage write failed: %s", spec.name, exc)
                raise storage from None
            log.exception(
                "unhandled error in %s",
                spec.name,
                extra={"method": spec.name, "request_id": ctx.request_id},
            )
            raise InternalError(ctx.request_id) from None

    async def _run_audited(self, spec: MethodSpec, ctx: CallContext, params: Any) -> Any:
        who = ctx.identity.subject if ctx.identity else None
        role = ctx.identity.role.label if ctx.identity else None
        fields = {
            "who": who,
            "role": role,
            "method": spec.name,
            "remote": ctx.session.remote,
            "params": params.model_dump(mode="json", exclude_none=True),
        }
        try:
            result = _dump(await self._run(spec, ctx, params))
        except RpcError as error:
            audit("rpc call", **fields, result="error", code=error.code)
            raise
        audit("rpc call", **fields, result="ok")
        return result

    def _validated(self, spec: MethodSpec, raw: dict[str, Any]) -> Params:
        model = spec.params
        if not raw and not spec.param_names:
            cached = self._no_params.get(model)
            if cached is None:
                cached = self._no_params[model] = model()
            return cached
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            raise params_error(exc) from None

    @staticmethod
    def _params_dict(params: dict[str, Any] | list[Any] | None) -> dict[str, Any]:
        if params is None:
            return {}
        if isinstance(params, list):
            raise InvalidParams(
                "params",
                "positional params are not supported",
                "pass params by name as a JSON object",
            )
        return dict(params)

    def _identity_for(self, spec: MethodSpec, session: Session, credential: Any) -> Identity | None:
        """The caller's identity, checked against the method's role. Public methods ignore it."""
        if spec.role is None:
            return session.identity
        identity = self._call_identity(session, credential)
        if not allows(identity.role, spec.role):
            raise PermissionDenied(spec.role.label, identity.role.label)
        return identity

    def _call_identity(self, session: Session, credential: Any) -> Identity:
        if credential is not None:
            return self._verify_call_credential(session, credential)
        try:
            if session.identity is None:
                raise AuthError("not authenticated: call authenticate first")
            self.auth.recheck(session.identity)
            return session.identity
        except AuthError as exc:
            raise AuthenticationFailed(exc.reason) from None

    def _verify_call_credential(self, session: Session, credential: Any) -> Identity:
        """A per-call `auth_token`: counted against the failed-auth limit like authenticate."""
        wait_ms = self.auth.limiter.retry_after_ms(session.remote)
        if wait_ms:
            raise RateLimited(wait_ms, scope="address")
        try:
            identity = self.auth.verify(credential)
        except AuthError as exc:
            self._credential_refused(session, exc.reason, checked=True)
        session.proven = True  # the connection holds a working credential: full budgets
        return identity

    def _credential_refused(self, session: Session, reason: str, *, checked: bool = False) -> Never:
        """Count a rejected credential against the per-address limit, audit it, raise -32001."""
        limiter = self.auth.limiter
        if not checked:
            wait_ms = limiter.retry_after_ms(session.remote)
            if wait_ms:
                raise RateLimited(wait_ms, scope="address")
        limiter.record_failure(session.remote)
        audit("authentication failed", remote=session.remote, reason=reason)
        raise AuthenticationFailed(reason)
