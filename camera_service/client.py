"""Async Python client for the camera-service JSON-RPC API (used by tests and benchmarks).

async with CameraClient("ws://127.0.0.1:8002/ws") as client:
    await client.authenticate(api_key)
    cameras = await client.call("get_camera_list")
    async for note in client.notifications():
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any, Literal, TypedDict

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed


class RpcCallError(Exception):
    """The server answered with a JSON-RPC error."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.data = data


ComponentState = Literal["RUNNING", "STOPPED", "ERROR", "STARTING", "STOPPING"]


class ServerInfo(TypedDict):
    """get_server_info (API 1.1): ``supported_formats`` is a flat list of format names,
    ``formats`` the same names per kind (``snapshot``, ``recording``)."""

    name: str
    version: str
    api_version: str
    capabilities: list[str]
    supported_formats: list[str]
    formats: dict[str, list[str]]
    max_cameras: int


class ComponentDetail(TypedDict):
    status: str  # healthy | degraded | unhealthy | disabled | starting
    details: dict[str, Any]


class Status(TypedDict):
    """get_status (API 1.1): ``components`` maps a name to its state string; the health of
    each component and its ``details`` (``reason`` when not healthy) are in
    ``component_details``."""

    status: Literal["HEALTHY", "DEGRADED", "UNHEALTHY"]
    uptime: float
    version: str
    components: dict[str, ComponentState]
    component_details: dict[str, ComponentDetail]


class SystemStatus(TypedDict):
    """get_system_status (API 1.1): ``available_cameras`` lists the connected camera ids."""

    status: Literal["starting", "partial", "ready"]
    message: str
    available_cameras: list[str]
    camera_count: int
    discovery_active: bool


class CameraClient:
    def __init__(
        self, url: str, *, origin: str | None = None, max_size: int | None = 16 << 20
    ) -> None:
        self.url = url
        self.origin = origin
        self.max_size = max_size
        self._ws: ClientConnection | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._notes: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> CameraClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def connection(self) -> ClientConnection:
        if self._ws is None:
            raise RuntimeError("not connected")
        return self._ws

    async def connect(self) -> None:
        headers = {"Origin": self.origin} if self.origin else None
        self._ws = await connect(
            self.url, additional_headers=headers, max_size=self.max_size, compression=None
        )
        self._reader = asyncio.create_task(self._read_loop())

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def _read_loop(self) -> None:
        assert self._ws is not None
        try:
            async for frame in self._ws:
                self._route(json.loads(frame))
        except ConnectionClosed:
            pass
        finally:
            error = ConnectionError("connection closed")
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(error)
            self._pending.clear()
            self._notes.put_nowait(None)

    def _route(self, message: Any) -> None:
        for item in message if isinstance(message, list) else [message]:
            if "method" in item and "id" not in item:
                self._notes.put_nowait(item)
                continue
            future = self._pending.pop(item.get("id"), None)
            if future is not None and not future.done():
                future.set_result(item)

    async def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a call and return the whole response object."""
        request_id = next(self._ids)
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": request_id}
        if params is not None:
            message["params"] = params
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        await self.connection.send(json.dumps(message))
        response: dict[str, Any] = await future
        return response

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Send a call; return its result or raise RpcCallError."""
        response = await self.request(method, params)
        if "error" in response:
            error = response["error"]
            raise RpcCallError(error["code"], error["message"], error.get("data"))
        return response["result"]

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        await self.connection.send(json.dumps(message))

    async def authenticate(self, token: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("authenticate", {"auth_token": token})
        return result

    async def server_info(self) -> ServerInfo:
        info: ServerInfo = await self.call("get_server_info")
        return info

    async def status(self) -> Status:
        """get_status (admin)."""
        status: Status = await self.call("get_status")
        return status

    async def system_status(self) -> SystemStatus:
        status: SystemStatus = await self.call("get_system_status")
        return status

    async def system_metrics(self) -> dict[str, Any]:
        """get_metrics' ``system_metrics`` (admin): process figures plus the host's
        ``cpu_usage``, ``memory_usage`` and ``disk_usage`` in percent."""
        metrics: dict[str, Any] = (await self.call("get_metrics"))["system_metrics"]
        return metrics

    async def next_notification(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next notification; raises TimeoutError, or ConnectionError once closed."""
        note = await asyncio.wait_for(self._notes.get(), timeout)
        if note is None:
            self._notes.put_nowait(None)
            raise ConnectionError("connection closed")
        return note

    def pending_notifications(self) -> int:
        """Notifications received and not yet read (after a call's answer, everything the
        server sent before that answer is counted: one connection keeps its order)."""
        return self._notes.qsize()

    async def notifications(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            note = await self._notes.get()
            if note is None:
                return
            yield note
