"""One HTTP/1.1 connection: h11 parses the requests (`h11.Connection(h11.SERVER)`, a fresh
one per request), `framing` writes the responses, under an asyncio Protocol.

Admission: over `max_connections_per_address` a connection is aborted as soon as it is
accepted. At `max_connections` the connection that has waited longest for its first request
head (at least 1 s) is aborted to make room, so slow peers cannot keep a quick client (a
health probe) out; with none such the newcomer is aborted.

Deadlines: the first request head must be complete within `header_timeout` of the accept
(else the connection is aborted), each later one within `header_timeout` of the previous
response (an idle or half-sent keep-alive request is closed). A body must be complete within
`body_timeout` of its head, or the handler reading it gets `BodyTimeout` (the client 408).
A head over `MAX_HEAD_BYTES` gets 431; anything h11 finds malformed (a bad chunk, two
different Content-Lengths, ...) and a request with both Content-Length and
Transfer-Encoding get 400; the connection is then closed.

Requests are answered one at a time, in order: data arriving after a request's body while
it is answered pauses reading until the response has gone out, so pipelined requests wait
in the socket, not in memory.
A body nobody reads yet is buffered up to 64 KiB before reading pauses. A response whose
handler did not read the whole body closes the connection. Writes wait for the transport to
drain (`pause_writing` / `resume_writing`); a peer that takes nothing for
`DRAIN_TIMEOUT_S` is dropped. A handler error is logged and answered 500 (or
the connection aborted when its response had begun).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING, cast

import h11

from camera_service.transport.web.errors import (
    BodyTimeout,
    HTTPBadRequest,
    HTTPException,
    HTTPRequestHeaderFieldsTooLarge,
)
from camera_service.transport.web.framing import Framing, http_date, keeps_alive, response_head
from camera_service.transport.web.messages import Body, Headers, Request, Response, StreamResponse

if TYPE_CHECKING:
    from camera_service.transport.web.server import Server

log = logging.getLogger("camera_service.transport.http")

MAX_HEAD_BYTES = 16 * 1024
FILE_CHUNK = 256 * 1024  # read in a worker thread where the loop has no sendfile
SENDFILE_CHUNK = 1024 * 1024
DRAIN_TIMEOUT_S = 60.0  # a peer that takes no bytes this long is dropped


class HttpProtocol(asyncio.Protocol):
    def __init__(self, server: Server) -> None:
        self._server = server
        self._conn = _parser()
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.address = ""
        self._admitted = False
        self._counted = False  # holds a place in the cap
        self._lost = False
        self._timer: asyncio.TimerHandle | None = None
        self._reading = True
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._body: Body | None = None
        self._method = ""
        self._started = False  # the current response's head has gone out
        self._close_after = False  # the current request was refused: no next one
        self._keep_alive = False  # the current request's peer allows a next request
        self._http11 = False
        self._framing: Framing | None = None  # of the response under way
        self._ended = False  # the current response is complete
        self._continue_sent = False
        self.task: asyncio.Task[None] | None = None

    # -- admission and deadlines ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.address = str(peer[0]) if peer else "unknown"
        server = self._server
        cap = server.cap
        admitted = cap.admit(self.address)
        # When the total is full (not this address's share), the slowest may make room.
        total_full = not admitted and cap.count(self.address) < cap.per_address
        if total_full and server.waiting.evict_oldest():
            server.on_refused("(oldest waiting)", "evicted")
            admitted = cap.admit(self.address)
        if not admitted:
            server.on_refused(self.address, "cap")
            self.transport.abort()
            return
        self._admitted = self._counted = True
        server.connections.add(self)
        server.waiting.add(self)
        self._timer = self._loop.call_later(server.header_timeout, self._head_overdue, True)

    def _head_overdue(self, first: bool) -> None:
        self._timer = None
        if self.task is not None:
            return
        if first:
            self._server.on_refused(self.address, "header_timeout")
            self.shed()
        elif self.transport is not None:
            self.transport.abort()

    def shed(self) -> None:
        """Give up this connection now: its place in the cap is free at once."""
        self._server.waiting.discard(self)
        self._release()
        if self.transport is not None:
            self.transport.abort()

    def _release(self) -> None:
        if self._counted:
            self._counted = False
            self._server.cap.release(self.address)

    def close_when_idle(self) -> None:
        """Server stop: close now if no request is being answered (else after it)."""
        if self.task is None and self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- reading ----------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if not self._admitted or self._lost:
            return
        self._conn.receive_data(data)
        if self.task is not None and self._conn.their_state is h11.DONE:
            # The next request arrives while this one is answered: it waits in the socket.
            self._pause_reading()
        self._process()

    def eof_received(self) -> bool | None:
        if not self._admitted or self._lost:
            return None
        self._conn.receive_data(b"")
        self._process()
        return self.task is not None  # keep the write side for the response under way

    def _process(self) -> None:
        while not self._lost:
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError as exc:
                self._malformed(exc)
                return
            if event is h11.NEED_DATA:
                return
            if event is h11.PAUSED:  # this request is in; reading pauses if more comes
                return
            if isinstance(event, h11.Request):
                self._begin(event)
            elif isinstance(event, h11.Data):
                body = self._body
                assert body is not None
                body.feed(bytes(event.data))
                if not body.wants_more():
                    self._pause_reading()
            elif isinstance(event, h11.EndOfMessage):
                if self._body is not None:
                    self._body.finish()
            elif isinstance(event, h11.ConnectionClosed):
                if self.task is None and self.transport is not None:
                    self.transport.close()
                return

    def _pause_reading(self) -> None:
        if self._reading and self.transport is not None and not self.transport.is_closing():
            self._reading = False
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if not self._reading and self.transport is not None and not self.transport.is_closing():
            self._reading = True
            self.transport.resume_reading()

    def want_body(self) -> None:
        self._resume_reading()

    def _begin(self, event: h11.Request) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._server.waiting.discard(self)
        self._method = event.method.decode("ascii", "replace")
        target = event.target.decode("ascii", "replace")
        items: dict[str, tuple[str, str]] = {}
        # h11 bounds a head still arriving; one that came whole in a read is measured here.
        size = len(event.method) + len(event.target) + 12
        for raw_name, raw_value in event.headers.raw_items():
            size += len(raw_name) + len(raw_value) + 4
            name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
            key = name.lower()
            seen = items.get(key)
            items[key] = (name, f"{seen[1]}, {value}" if seen else value)
        headers = Headers.adopt(items)
        error: HTTPException | None = None
        if size > MAX_HEAD_BYTES:
            error = HTTPRequestHeaderFieldsTooLarge(text="request head too large\n")
        elif "Content-Length" in headers and "Transfer-Encoding" in headers:
            error = HTTPBadRequest(text="both Content-Length and Transfer-Encoding\n")
        target = _origin_form(target)
        if not target.startswith("/"):
            error = HTTPBadRequest(text="bad request target\n")
            target = "/"
        self._body = Body(self._loop, self._loop.time() + self._server.body_timeout)
        request = Request(
            self,
            self._method,
            target,
            headers,
            self.address,
            self._body,
            event.http_version.decode("ascii", "replace"),
        )
        self._started = self._ended = self._continue_sent = False
        self._framing = None
        self._http11 = request.version == "1.1"
        self._keep_alive = keeps_alive(request.version, headers.get("Connection"))
        self._close_after = error is not None
        self.task = self._loop.create_task(self._respond(request, error))

    def _malformed(self, exc: h11.RemoteProtocolError) -> None:
        """h11 refused what the peer sent: 4xx and close (or the handler's read fails)."""
        if self.task is not None:
            self._close_after = True
            self._pause_reading()  # nothing more is read from this peer
            if self._body is not None:
                self._body.fail(HTTPBadRequest(text=f"malformed request body: {exc}\n"))
            return
        status = exc.error_status_hint
        log.debug("malformed HTTP request from %s: %s", self.address, exc)
        response = Response(status=status, text=f"{status}: {exc}\n")
        self._server.on_prepare(None, response)
        response.headers["Date"] = http_date()
        framing = response_head(
            status,
            response.reason,
            response.headers.pairs(),
            method="GET",
            http11=True,
            keep_alive=False,
        )
        assert self.transport is not None
        self.transport.writelines([framing.head, response.body])
        self.transport.close()

    # -- answering --------------------------------------------------------------------------

    async def _respond(self, request: Request, error: HTTPException | None) -> None:
        started = time.perf_counter()
        status = 0
        try:
            response = await self._answer(request, error)
            status = response.status
            if response.broken:  # a write did not complete (e.g. timed out): no way on
                self.abort()
        except ConnectionError as exc:
            log.debug("HTTP client %s went away: %s", self.address, exc)
            self.abort()
        except Exception:
            log.exception("HTTP handler for %s %s failed", request.method, request.raw_path)
            if self._started:
                self.abort()
            else:
                status = 500
                failed = Response(status=500, text="500: Internal Server Error\n")
                await self._send_quietly(request, failed)
        finally:
            self._server.access(request, status, time.perf_counter() - started)
            self.task = None
            self._body = None
            self._cycle_done()

    async def _answer(self, request: Request, error: HTTPException | None) -> StreamResponse:
        try:
            if error is not None:
                raise error
            response = await self._server.dispatch(request)
            await response.prepare(request)
        except HTTPException as exc:
            if self._started:
                raise
            response = error_response(exc)
            await response.prepare(request)
        except BodyTimeout:
            if self._started:
                raise
            log.info("request body not received in time", extra={"remote": self.address})
            response = Response(
                status=408,
                text="request body not received in time\n",
                headers={"Connection": "close"},
            )
            await response.prepare(request)
        if not response.broken:
            await response.write_eof()
        return response

    async def _send_quietly(self, request: Request, response: Response) -> None:
        try:
            await response.prepare(request)
            await response.write_eof()
        except Exception:
            self.abort()

    def _cycle_done(self) -> None:
        if self._lost or self.transport is None:
            return
        framing, conn = self._framing, self._conn
        if (
            self._close_after
            or self._server.closing
            or framing is None
            or framing.close
            or not self._ended
            or conn.their_state is not h11.DONE
        ):
            self.transport.close()
            return
        # A fresh parser for the next request, fed what already arrived of it.
        data, closed = conn.trailing_data
        self._conn = conn = _parser()
        if data:
            conn.receive_data(data)
        if closed:
            conn.receive_data(b"")
        self._timer = self._loop.call_later(self._server.header_timeout, self._head_overdue, False)
        self._resume_reading()
        if data or closed:
            self._process()

    # -- the Channel a response writes through ---------------------------------------------

    def start_response(
        self, request: Request, response: StreamResponse, body: bytes | None = None
    ) -> None:
        """Send the head; with `body`, the whole response in one write."""
        if self._lost or self.transport is None:
            raise ConnectionResetError("client went away")
        self._server.on_prepare(request, response)
        headers = response.headers
        headers["Date"] = http_date()
        if self._close_after or self._server.closing or self._conn.their_state is not h11.DONE:
            headers["Connection"] = "close"  # e.g. the body was not read: no next request
        framing = response_head(
            response.status,
            response.reason,
            headers.pairs(),
            method=self._method,
            http11=self._http11,
            keep_alive=self._keep_alive,
        )
        self._framing = framing
        self._started = True
        if body is None:
            self.transport.write(framing.head)
            return
        out = [framing.head, *framing.body(body)] if body else [framing.head]
        out.append(framing.end())
        self._ended = True
        self.transport.writelines(out)

    def _live_framing(self) -> Framing:
        if self._lost or self.transport is None:
            raise ConnectionResetError("client went away")
        assert self._framing is not None, "response not started"
        return self._framing

    async def send_body(self, data: bytes) -> None:
        out = self._live_framing().body(data)
        if out:
            assert self.transport is not None
            self.transport.writelines(out)
            await self._drain()

    async def end_response(self) -> None:
        tail = self._live_framing().end()
        self._ended = True
        if tail:
            assert self.transport is not None
            self.transport.write(tail)
        await self._drain()

    async def send_file(self, fd: int, offset: int, count: int) -> None:
        self._live_framing().count(count)
        transport = self.transport
        assert transport is not None
        await self._drain()
        position, left = offset, count
        try:
            with os.fdopen(fd, "rb", buffering=0, closefd=False) as file:
                while left:  # in pieces, each with the drain deadline
                    size = min(SENDFILE_CHUNK, left)
                    try:
                        async with asyncio.timeout(DRAIN_TIMEOUT_S):
                            sent = await self._loop.sendfile(
                                transport, file, position, size, fallback=False
                            )
                    except TimeoutError:
                        raise ConnectionResetError("client took no data for too long") from None
                    if sent < size:
                        raise ConnectionResetError("file shrank while being sent")
                    position += sent
                    left -= sent
            return
        except (NotImplementedError, RuntimeError, asyncio.SendfileNotAvailableError):
            if position != offset:
                raise
            # e.g. uvloop: read in a worker thread instead
        while left:
            chunk = await self._loop.run_in_executor(
                None, os.pread, fd, min(FILE_CHUNK, left), position
            )
            if not chunk:
                raise ConnectionResetError("file shrank while being sent")
            if self._lost:
                raise ConnectionResetError("client went away")
            transport.write(chunk)
            position += len(chunk)
            left -= len(chunk)
            await self._drain()

    def send_continue(self) -> None:
        """`100 Continue` to a peer waiting for it before sending the body (once)."""
        if self._continue_sent or self._started or self.transport is None or self._lost:
            return
        self._continue_sent = True
        if self._http11:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    async def drain(self) -> None:
        await self._drain()

    async def _drain(self) -> None:
        if self._lost:
            raise ConnectionResetError("client went away")
        if not self._write_paused:
            return
        waiter = self._loop.create_future()
        self._drain_waiter = waiter
        try:
            async with asyncio.timeout(DRAIN_TIMEOUT_S):
                await waiter
        except TimeoutError:
            raise ConnectionResetError("client took no data for too long") from None
        finally:
            self._drain_waiter = None

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._server.waiting.discard(self)
        if not self._admitted:
            return
        self._lost = True
        self._release()
        self._server.connections.discard(self)
        gone = ConnectionResetError("client went away")
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(gone)
        if self._body is not None:
            self._body.fail(gone)


def _parser() -> h11.Connection:
    return h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)


def error_response(exc: HTTPException) -> Response:
    return Response(status=exc.status, reason=exc.reason, text=exc.text, headers=exc.headers)


def _origin_form(target: str) -> str:
    """`/path?q` from an absolute-form target (`http://host/path?q`); others as given."""
    lowered = target[:8].lower()
    if lowered.startswith(("http://", "https://")):
        rest = target.split("://", 1)[1]
        slash = rest.find("/")
        return rest[slash:] if slash >= 0 else "/"
    return target
