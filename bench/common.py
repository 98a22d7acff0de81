"""Shared pieces of the benchmarks: a lean WebSocket load generator that runs in its own
process, latency summaries and table formatting.

The load generator is a separate interpreter (`python -m bench.common`) fed one JSON job per
line on stdin; it answers a `{"event": "ready"}` line when its connections are open and
authenticated (the timed phase starts right after), then one result line. Keeping the load
in another process means the server under test gets a core to itself on a 2-core box.

The default client speaks WebSocket itself over an `asyncio.Protocol` (handshake, masked
text frames, unmasked server frames, ping → pong): about 10 µs of CPU per call, several
times less than a `websockets` client connection, so the generator is not the bottleneck.
`client="websockets"` uses the library's client instead, for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO, TypeVar, cast

from websockets.asyncio.client import ClientConnection, connect

try:
    from websockets.speedups import apply_mask
except ImportError:  # pure-Python build of websockets
    from websockets.utils import apply_mask

REPO_ROOT = Path(__file__).resolve().parents[1]
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
JOB_TIMEOUT_S = 300.0
CLIENTS = ("raw", "websockets")
T = TypeVar("T")


# --- statistics ---------------------------------------------------------------------------


# --- command-line plumbing shared by the benchmarks ---------------------------------------


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be at least 0")
    return value


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="PATH",
        help="write the figures as JSON to PATH (no PATH: stdout, and the table goes to stderr)",
    )


def add_loop_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="event loop the in-process daemon (and everything else in this process) runs on",
    )


def run_on_loop(main: Coroutine[Any, Any, T], loop: str) -> T:
    """`asyncio.run(main)` on the loop `--loop` names (camera_service.eventloop's choice)."""
    from camera_service import eventloop

    return eventloop.run(main, "uvloop" if loop == "uvloop" else "asyncio")


def run_bench(
    parser: argparse.ArgumentParser,
    argv: list[str] | None,
    run: Callable[[argparse.Namespace, TextIO], Coroutine[Any, Any, dict[str, Any]]],
    table: Callable[[dict[str, Any]], str],
) -> int:
    """The common `main()`: `--json`, parse, run the coroutine, print the table and the JSON."""
    add_json_option(parser)
    return run_parsed(parser.parse_args(argv), run, table)


def run_parsed(
    args: argparse.Namespace,
    run: Callable[[argparse.Namespace, TextIO], Coroutine[Any, Any, dict[str, Any]]],
    table: Callable[[dict[str, Any]], str],
) -> int:
    """Run the coroutine on parsed `args`, print the table and the JSON."""
    report = asyncio.run(run(args, log_stream(args.json)))
    publish(report, table(report), args.json)
    return 0


def log_stream(json_target: str | None) -> TextIO:
    """Where progress and the table go: stderr when the JSON goes to stdout."""
    return sys.stderr if json_target == "-" else sys.stdout


def publish(report: dict[str, Any], table: str, json_target: str | None) -> None:
    """Print the table, and write the report as JSON to stdout (`-`) or a file."""
    print(table, file=log_stream(json_target))
    if json_target == "-":
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif json_target:
        Path(json_target).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def run_ffmpeg_benchmark(
    args: argparse.Namespace,
    run: Callable[[argparse.Namespace, TextIO], Coroutine[Any, Any, dict[str, Any]]],
    render: Callable[[dict[str, Any]], str],
) -> int:
    """`main` of a benchmark that needs FFmpeg: exit 2 without it, else as `run_parsed`."""
    if shutil.which("ffmpeg") is None:
        print("ffmpeg is not on PATH", file=sys.stderr)
        return 2
    return run_parsed(args, run, render)


def subprocess_env() -> dict[str, str]:
    """The environment for a benchmark's child process: this repository importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(REPO_ROOT), env.get("PYTHONPATH")) if part
    )
    return env


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return float(sorted_values[index])


def latency_summary_ms(latencies_ns: list[int]) -> dict[str, float]:
    values = sorted(latencies_ns)
    scale = 1e-6
    return {
        "p50_ms": round(percentile(values, 0.50) * scale, 3),
        "p95_ms": round(percentile(values, 0.95) * scale, 3),
        "p99_ms": round(percentile(values, 0.99) * scale, 3),
        "max_ms": round((values[-1] if values else 0) * scale, 3),
        "mean_ms": round(statistics.fmean(values) * scale, 3) if values else 0.0,
    }


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain left/right aligned text table (first column left, the rest right)."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        first = str(cells[0]).ljust(widths[0])
        rest = [str(cell).rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest])

    return "\n".join([line(headers), *(line(row) for row in rows)])


# --- a minimal WebSocket client -------------------------------------------------------------


class RpcConnection(Protocol):
    async def call(self, text: str) -> str: ...

    async def close(self) -> None: ...


class _RawProtocol(asyncio.Protocol):
    """Client side of RFC 6455 for small unfragmented text messages, one call at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._upgraded = False
        self.handshake: asyncio.Future[bytes] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self._waiter: asyncio.Future[bytes] | None = None
        self.unsolicited = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def send_frame(self, opcode: int, payload: bytes) -> None:
        assert self.transport is not None
        length = len(payload)
        if length < 126:
            header = bytes((0x80 | opcode, 0x80 | length))
        elif length < 1 << 16:
            header = bytes((0x80 | opcode, 0x80 | 126)) + length.to_bytes(2, "big")
        else:
            header = bytes((0x80 | opcode, 0x80 | 127)) + length.to_bytes(8, "big")
        mask = os.urandom(4)
        self.transport.write(header + mask + apply_mask(payload, mask))

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        if not self._upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buffer[:end])
            del buffer[: end + 4]
            self._upgraded = True
            if not self.handshake.done():
                self.handshake.set_result(head)
        while len(buffer) >= 2:
            first, length, start = buffer[0], buffer[1] & 0x7F, 2
            if length == 126:
                if len(buffer) < 4:
                    return
                length, start = int.from_bytes(buffer[2:4], "big"), 4
            elif length == 127:
                if len(buffer) < 10:
                    return
                length, start = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < start + length:
                return
            payload = bytes(buffer[start : start + length])
            del buffer[: start + length]
            self._frame(first, payload)

    def _frame(self, first: int, payload: bytes) -> None:
        opcode = first & 0x0F
        if opcode in (1, 2):
            if not first & 0x80:
                self._fail(ConnectionError("fragmented message: not supported by the bench"))
                return
            waiter, self._waiter = self._waiter, None
            if waiter is not None and not waiter.done():
                waiter.set_result(payload)
            else:
                self.unsolicited += 1
        elif opcode == 9:
            self.send_frame(0xA, payload)
        elif opcode == 8:
            self._fail(ConnectionError("closed by the server"))

    def _fail(self, exc: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionError("connection lost"))
        if not self.handshake.done():
            self.handshake.set_exception(ConnectionError("connection lost during handshake"))
        if not self.closed.done():
            self.closed.set_result(None)

    def expect(self) -> asyncio.Future[bytes]:
        waiter = self._loop.create_future()
        self._waiter = waiter
        return waiter


@dataclass
class RawConnection:
    protocol: _RawProtocol

    @classmethod
    async def open(cls, host: str, port: int, path: str) -> RawConnection:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(lambda: _RawProtocol(loop), host, port)
        key = base64.b64encode(os.urandom(16))
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        )
        assert protocol.transport is not None
        protocol.transport.write(request.encode())
        head = await asyncio.wait_for(protocol.handshake, 10)
        accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
        if not head.startswith(b"HTTP/1.1 101") or accept not in head:
            protocol.transport.close()
            raise ConnectionError(f"handshake refused: {head.splitlines()[0]!r}")
        return cls(protocol)

    async def call(self, text: str) -> str:
        waiter = self.protocol.expect()
        self.protocol.send_frame(1, text.encode())
        return (await waiter).decode()

    async def close(self) -> None:
        protocol = self.protocol
        if protocol.transport is None or protocol.transport.is_closing():
            return
        protocol.send_frame(8, (1000).to_bytes(2, "big"))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(protocol.closed), 2)
        protocol.transport.close()


@dataclass
class LibraryConnection:
    """The same interface over a `websockets` client connection (heavier per call)."""

    ws: ClientConnection

    @classmethod
    async def open(cls, host: str, port: int, path: str) -> LibraryConnection:
        ws = await connect(f"ws://{host}:{port}{path}", compression=None, max_size=1 << 20)
        return cls(ws)

    async def call(self, text: str) -> str:
        await self.ws.send(text)
        reply = await self.ws.recv()
        return reply if isinstance(reply, str) else reply.decode()

    async def close(self) -> None:
        await self.ws.close()


async def open_connection(client: str, host: str, port: int, path: str) -> RpcConnection:
    if client == "raw":
        return await RawConnection.open(host, port, path)
    if client == "websockets":
        return await LibraryConnection.open(host, port, path)
    raise ValueError(f"unknown client {client!r}; expected one of {CLIENTS}")


# --- the load job ----------------------------------------------------------------------------


@dataclass
class LoadJob:
    """`connections` concurrent connections, each authenticating with `token` (when set) and
    then making `calls` sequential `method` calls. Only the calls are timed."""

    host: str
    port: int
    path: str = "/ws"
    connections: int = 50
    calls: int = 400
    token: str | None = None
    method: str = "ping"
    expect: str = '"pong"'
    client: str = "raw"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))


@dataclass
class LoadResult:
    calls: int
    errors: int
    wall_s: float
    req_per_s: float
    client_cpu: float
    latency: dict[str, float]
    server_cpu: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "errors": self.errors,
            "wall_s": round(self.wall_s, 4),
            "req_per_s": round(self.req_per_s, 1),
            **self.latency,
            "server_cpu": round(self.server_cpu, 3),
            "client_cpu": round(self.client_cpu, 3),
            "server_us_per_call": round(self.server_us_per_call, 2),
        }

    @property
    def server_us_per_call(self) -> float:
        """Server CPU per call: steadier than req/s on a shared machine."""
        return self.server_cpu / self.req_per_s * 1e6 if self.req_per_s else 0.0


def _auth_frame(token: str) -> str:
    params = json.dumps({"auth_token": token})
    return f'{{"jsonrpc":"2.0","method":"authenticate","params":{params},"id":0}}'


async def run_load(job: LoadJob, on_ready: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """Run one job in this process's event loop; returns the figures as a dict."""
    conns: list[RpcConnection] = []
    try:
        for _ in range(job.connections):
            conns.append(await open_connection(job.client, job.host, job.port, job.path))
        if job.token is not None:
            frame = _auth_frame(job.token)
            replies = await asyncio.gather(*(conn.call(frame) for conn in conns))
            refused = [reply for reply in replies if '"result"' not in reply]
            if refused:
                raise RuntimeError(f"authenticate failed: {refused[0][:200]}")
        start = asyncio.Event()
        per_conn: list[list[int]] = [[] for _ in conns]
        errors = [0]
        head = f'{{"jsonrpc":"2.0","method":"{job.method}","id":'

        async def drive(conn: RpcConnection, out: list[int]) -> None:
            await start.wait()
            clock = time.perf_counter_ns
            expect = job.expect
            for call_id in range(1, job.calls + 1):
                sent = clock()
                reply = await conn.call(f"{head}{call_id}}}")
                out.append(clock() - sent)
                if expect not in reply:
                    errors[0] += 1

        drivers = [
            asyncio.create_task(drive(conn, out)) for conn, out in zip(conns, per_conn, strict=True)
        ]
        await asyncio.sleep(0)
        on_ready()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        start.set()
        await asyncio.gather(*drivers)
        wall = time.perf_counter() - wall0
        cpu = time.process_time() - cpu0
    finally:
        await asyncio.gather(*(conn.close() for conn in conns), return_exceptions=True)
    latencies = [value for out in per_conn for value in out]
    return {
        "calls": len(latencies),
        "errors": errors[0],
        "wall_s": wall,
        "req_per_s": len(latencies) / wall if wall > 0 else 0.0,
        "client_cpu": cpu / wall if wall > 0 else 0.0,
        "latency": latency_summary_ms(latencies),
    }


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def worker_main() -> None:
    """Entry point of the load process: one JSON job per stdin line, until EOF."""
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            job = LoadJob(**json.loads(line))
            result = asyncio.run(
                asyncio.wait_for(run_load(job, lambda: _emit({"event": "ready"})), JOB_TIMEOUT_S)
            )
            _emit({"event": "result", **result})
        except Exception as exc:
            _emit({"event": "error", "error": f"{type(exc).__name__}: {exc}"})


class LoadWorker:
    """The parent's handle on the load process (started with the parent's interpreter)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls) -> LoadWorker:
        env = subprocess_env()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.common",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=REPO_ROOT,
            env=env,
        )
        return cls(proc)

    async def _read(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise RuntimeError("the load process exited")
        message: dict[str, Any] = json.loads(line)
        if message.get("event") == "error":
            raise RuntimeError(f"load process: {message['error']}")
        return message

    async def run(self, job: LoadJob) -> LoadResult:
        """Run a job; `server_cpu` is this (server) process's CPU share of the timed phase."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(job.to_json().encode() + b"\n")
        await self.proc.stdin.drain()
        await self._read(60)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        message = await self._read(JOB_TIMEOUT_S)
        cpu, own_wall = time.process_time() - cpu0, time.perf_counter() - wall0
        wall = float(message["wall_s"])
        return LoadResult(
            calls=int(message["calls"]),
            errors=int(message["errors"]),
            wall_s=wall,
            req_per_s=float(message["req_per_s"]),
            client_cpu=float(message["client_cpu"]),
            latency=dict(message["latency"]),
            server_cpu=cpu / own_wall if own_wall > 0 else 0.0,
        )

    async def close(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


if __name__ == "__main__":
    worker_main()
