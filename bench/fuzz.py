"""Fuzz the JSON-RPC API of a real daemon and report crashes, -32603 answers and RSS.

One run starts `python -m camera_service run` as a subprocess (127.0.0.1, ephemeral ports, a
lavfi camera, MediaMTX off, the per-connection rate limit off so frames reach the methods),
reads the method list from `rpc.discover`, and sends `--frames` frames over `--connections`
WebSocket connections, half authenticated as admin, half never authenticated:

* lone UTF-16 surrogates (`"\\ud800"`) in `id`, `method`, member names, params, `auth_token`;
* NaN, ±Infinity, 1e400, -0, 1e-400, 2**64, integers of 5,000 digits, in `id` and params;
* deep nesting (arrays and objects, up to 100,000 levels, within `server.max_message_bytes`);
* junk batches (empty, over `server.max_batch`, non-objects, nested, mixed with valid calls);
* every method of `rpc.discover` with params made from its schema and then mutated (wrong
  types, extra members, out-of-range numbers, long strings, control characters, emoji);
* frames that are not JSON at all (truncated, binary frames, random bytes).

Every `--window` frames a connection sends a `ping` sentinel and waits for its answer, so the
load is bounded and every answer is counted. Reported: frames sent, answers by error code, the
-32603 answers (with samples), connections closed with 1011 or other codes, tracebacks and
ERROR lines in the daemon log, whether the daemon survived, its RSS before, at peak and after.

    python -m bench.fuzz                         # 100,000 frames, ~3-6 min on 2 cores
    python -m bench.fuzz --frames 2000 --json out.json

Exit status 1 when a crash was seen (daemon died, 1011 close, traceback) or a -32603 answer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench.common import positive_int
from bench.snapshot_latency import CAMERA, Daemon, daemon_config
from camera_service.auth.api_keys import ApiKeyStore
from camera_service.auth.roles import Role
from camera_service.config import build_config, deep_merge

SURROGATES = ("\ud800", "\udfff", "\udc00", "x\ud83d", "\ude00y")
# Placeholders replaced in the encoded text by numbers `json.dumps` cannot spell.
RAW_NUMBERS = {
    "__N_1e400__": "1e400",
    "__N_-1e400__": "-1e400",
    "__N_tiny__": "1e-400",
    "__N_-0__": "-0",
    "__N_digits__": "1" + "0" * 5000,
    "__N_-digits__": "-9" * 1 + "9" * 4999,
    "__N_exp__": "1E+999999999999",
}
SPECIAL_FLOATS = (float("nan"), float("inf"), float("-inf"))
STRINGS = (
    "",
    CAMERA,
    "camera0",
    "lab0_2030-01-01_00-00-00.mp4",
    "../../etc/passwd",
    "a" * 70,
    "x" * 5000,
    "\x00\x01\x1f",
    "\u202e\u200b",
    "\U0001f600" * 10,
    "rtsp://u:p@192.0.2.1/x",
    "rtsp://192.0.2.1/s?password=x",
    "*",
    "camera.*",
    "jpg",
    "fmp4",
    "age",
    "null",
)
JUNK_FRAMES = (
    "",
    " ",
    "{",
    "[",
    "]",
    "}",
    "null",
    "1",
    '"x"',
    "true",
    "[]",
    "{}",
    "[[]]",
    '{"jsonrpc":"2.0"',
    '{"jsonrpc":"2.0","method":"ping","id":1,"id":2}',
    '{"jsonrpc":"2.0","method":"ping","params":null,"id":1}',
    '{"jsonrpc":"2.0","method":"ping","params":"x","id":1}',
    '{"jsonrpc":"1.0","method":"ping","id":1}',
    '{"jsonrpc":"2.0","method":"ping","id":{}}',
    '{"jsonrpc":"2.0","method":"ping","id":true}',
    '{"jsonrpc":"2.0","method":1,"id":1}',
    '{"jsonrpc":"2.0","method":"rpc.discover","id":1,"extra":1}',
    "\ufeff{}",
    '{"a":"\\u0000"}',
    '{"jsonrpc":"2.0","method":"ping","id":"\\ud800\\udc00"}',
)


@dataclass
class Tally:
    frames: int = 0
    answers: int = 0
    notifications: int = 0
    codes: Counter[int] = field(default_factory=Counter)
    internal: list[str] = field(default_factory=list)
    closes: Counter[str] = field(default_factory=Counter)
    reconnects: int = 0
    categories: Counter[str] = field(default_factory=Counter)

    def answer(self, message: dict[str, Any]) -> None:
        if "method" in message and "id" not in message:
            self.notifications += 1
            return
        self.answers += 1
        error = message.get("error")
        if isinstance(error, dict):
            code = int(error.get("code", 0))
            self.codes[code] += 1
            if code == -32603 and len(self.internal) < 20:
                self.internal.append(json.dumps(message)[:300])
        else:
            self.codes[0] += 1  # a result


class FrameMaker:
    """Hostile frames over the methods of `rpc.discover`."""

    def __init__(
        self, methods: list[dict[str, Any]], rng: random.Random, admin_key: str, max_bytes: int
    ) -> None:
        self.methods = methods
        self.rng = rng
        self.admin_key = admin_key
        self.max_bytes = max_bytes
        self.ids = 0
        self.kinds = (
            ("method", 40, self.method_call),
            ("surrogate", 14, self.surrogate),
            ("number", 12, self.number),
            ("batch", 14, self.batch),
            ("nesting", 6, self.nesting),
            ("junk", 8, self.junk),
            ("envelope", 6, self.envelope),
        )
        self.weights = [weight for _, weight, _ in self.kinds]

    def next(self) -> tuple[str, str | bytes]:
        name, _, make = self.rng.choices(self.kinds, self.weights)[0]
        frame = make()
        if isinstance(frame, str) and len(frame.encode("utf-8", "surrogatepass")) > self.max_bytes:
            frame = frame[: self.max_bytes // 2]
        return name, frame

    # --- building blocks ------------------------------------------------------------------

    def new_id(self) -> Any:
        self.ids += 1
        roll = self.rng.random()
        if roll < 0.6:
            return self.ids
        if roll < 0.9:
            return f"f{self.ids}"
        return self.rng.choice([None, 0, -1, 1.5, "", 2**53, "\U0001f600"])

    def value(self, depth: int = 0) -> Any:
        roll = self.rng.random()
        if roll < 0.25:
            return self.rng.choice(STRINGS)
        if roll < 0.45:
            return self.rng.choice([0, 1, -1, 7, 50, 1000, 2**31, 2**64, -(2**63), 10**30, 0.5])
        if roll < 0.55:
            return self.rng.choice([True, False, None])
        if roll < 0.62:
            return self.rng.choice(SPECIAL_FLOATS)
        if roll < 0.7:
            return self.rng.choice(list(RAW_NUMBERS))
        if roll < 0.76:
            return self.rng.choice(SURROGATES)
        if depth > 3:
            return "deep"
        if roll < 0.88:
            return [self.value(depth + 1) for _ in range(self.rng.randint(0, 4))]
        return {self.rng.choice(STRINGS)[:20]: self.value(depth + 1) for _ in range(3)}

    def schema_value(self, schema: dict[str, Any]) -> Any:
        """A plausible value for a param's schema, mutated now and then."""
        if self.rng.random() < 0.3:
            return self.value()
        if "enum" in schema:
            return self.rng.choice(schema["enum"])
        kind = schema.get("type")
        for option in schema.get("anyOf", []):
            if option.get("type") != "null":
                return self.schema_value(option)
        if kind == "string":
            return self.rng.choice(STRINGS)
        if kind == "integer":
            low = schema.get("minimum", 0)
            high = schema.get("maximum", low + 100)
            return self.rng.choice([low, high, low - 1, high + 1, (low + high) // 2])
        if kind == "number":
            return self.rng.choice([0.0, 1.5, -1.0, 1e308, schema.get("maximum", 10) + 1])
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind == "array":
            items = schema.get("items", {})
            return [self.schema_value(items) for _ in range(self.rng.randint(0, 5))]
        if kind == "object":
            return {"k": self.value()}
        return self.value()

    def params_for(self, method: dict[str, Any]) -> Any:
        params: dict[str, Any] = {}
        for param in method.get("params", []):
            if param.get("required") or self.rng.random() < 0.6:
                params[param["name"]] = self.schema_value(param.get("schema", {}))
        roll = self.rng.random()
        if roll < 0.08:
            params[self.rng.choice(STRINGS)[:30] or "x"] = self.value()
        elif roll < 0.12:
            return [self.value()]
        elif roll < 0.16:
            params["auth_token"] = self.admin_key
        elif roll < 0.2:
            params["auth_token"] = self.rng.choice(["csk_x_y", "eyJ.e.e", "\ud800", 5, ""])
        return params

    def request(self, method: str, params: Any = None, request_id: Any = "new") -> dict[str, Any]:
        body: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            body["params"] = params
        if request_id == "new":
            body["id"] = self.new_id()
        elif request_id is not None:
            body["id"] = request_id
        return body

    def encode(self, body: Any) -> str:
        text = json.dumps(body, ensure_ascii=True, allow_nan=True)
        for placeholder, raw in RAW_NUMBERS.items():
            text = text.replace(f'"{placeholder}"', raw)
        return text

    def valid_call(self) -> dict[str, Any]:
        method = self.rng.choice(self.methods)
        notification = self.rng.random() < 0.05
        return self.request(
            method["name"], self.params_for(method), None if notification else "new"
        )

    # --- frame kinds ----------------------------------------------------------------------

    def method_call(self) -> str:
        return self.encode(self.valid_call())

    def surrogate(self) -> str:
        return self.encode(self.surrogate_body())

    def surrogate_body(self) -> dict[str, Any]:
        body = self.valid_call()
        lone = self.rng.choice(SURROGATES)
        where = self.rng.choice(["id", "method", "param", "key", "token", "member"])
        if where == "id":
            body["id"] = lone
        elif where == "method":
            body["method"] = body["method"] + lone
        elif where == "token":
            body["params"] = {"auth_token": f"csk_{lone}_x"}
        elif where == "member":
            body[lone] = 1
        else:
            params = body.get("params") if isinstance(body.get("params"), dict) else {}
            key = lone if where == "key" else self.rng.choice(["device", "filename", "topics"])
            params[key] = lone if where == "param" else 1
            body["params"] = params
        return body

    def number(self) -> str:
        body = self.valid_call()
        special: Any = self.rng.choice([*SPECIAL_FLOATS, *RAW_NUMBERS, 2**64, -(2**70)])
        if self.rng.random() < 0.4:
            body["id"] = special
        else:
            params = body.get("params") if isinstance(body.get("params"), dict) else {}
            names = [p["name"] for p in self.method_named(body["method"]).get("params", [])]
            params[self.rng.choice(names or ["limit"])] = special
            body["params"] = params
        return self.encode(body)

    def method_named(self, name: str) -> dict[str, Any]:
        return next((m for m in self.methods if m["name"] == name), {})

    def batch(self) -> str:
        roll = self.rng.random()
        if roll < 0.05:
            return "[]"
        if roll < 0.1:
            return self.encode([self.request("ping") for _ in range(self.rng.randint(51, 70))])
        entries: list[Any] = []
        for _ in range(self.rng.randint(1, 50)):
            pick = self.rng.random()
            if pick < 0.5:
                entries.append(self.valid_call())
            elif pick < 0.7:
                entries.append(self.surrogate_body())
            elif pick < 0.8:
                entries.append(self.value())
            elif pick < 0.9:
                entries.append([self.request("ping")])
            else:
                entries.append(self.request("ping", request_id=None))
        return self.encode(entries)

    def nesting(self) -> str:
        depth = self.rng.choice([50, 500, 5000, 50000, 100000])
        opener, closer = self.rng.choice([("[", "]"), ('{"a":', "}")])
        inner = opener * depth + "1" + closer * depth
        if self.rng.random() < 0.5:
            return inner
        method = self.rng.choice(self.methods)["name"]
        return f'{{"jsonrpc":"2.0","method":"{method}","params":{{"x":{inner}}},"id":1}}'

    def junk(self) -> str | bytes:
        roll = self.rng.random()
        if roll < 0.5:
            return self.rng.choice(JUNK_FRAMES)
        if roll < 0.7:
            text = self.method_call()
            return text[: self.rng.randint(0, len(text))]
        if roll < 0.85:
            return bytes(self.rng.getrandbits(8) for _ in range(self.rng.randint(1, 200)))
        return self.method_call().encode()  # a valid call as a binary frame

    def envelope(self) -> str:
        body = self.valid_call()
        mutation = self.rng.choice(["jsonrpc", "no-method", "params", "id-type", "dup"])
        if mutation == "jsonrpc":
            body["jsonrpc"] = self.rng.choice(["1.0", 2.0, None, "", "2.0 "])
        elif mutation == "no-method":
            body.pop("method")
        elif mutation == "params":
            body["params"] = self.rng.choice([1, "x", True, None])
        elif mutation == "id-type":
            body["id"] = self.rng.choice([[1], {"a": 1}, True, False])
        else:
            return self.encode(body)[:-1] + ',"method":"ping"}'
        return self.encode(body)


class FuzzConnection:
    """One WebSocket connection that reconnects (and re-authenticates) when closed."""

    def __init__(self, url: str, admin_key: str | None, tally: Tally, window: int) -> None:
        self.url = url
        self.admin_key = admin_key
        self.tally = tally
        self.window = window
        self.ws: ClientConnection | None = None
        self.reader: asyncio.Task[None] | None = None
        self.waiters: dict[str, asyncio.Future[None]] = {}
        self.sentinels = 0

    async def open(self) -> None:
        self.ws = await connect(self.url, max_size=None, compression=None, open_timeout=10)
        self.reader = asyncio.create_task(self.read_loop(self.ws))
        if self.admin_key:
            await self.ws.send(
                json.dumps(
                    {
                        "jsonrpc": "2.0",
                        "method": "authenticate",
                        "params": {"auth_token": self.admin_key},
                        "id": "auth",
                    }
                )
            )
            await self.sync()

    async def read_loop(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                try:
                    message = json.loads(raw)
                except ValueError:
                    self.tally.codes[-1] += 1  # not JSON: counted as a broken answer
                    continue
                for item in message if isinstance(message, list) else [message]:
                    if not isinstance(item, dict):
                        continue
                    waiter = self.waiters.pop(str(item.get("id")), None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(None)
                        continue
                    self.tally.answer(item)
        code = ws.close_code
        self.tally.closes[str(code)] += 1
        for waiter in self.waiters.values():
            if not waiter.done():
                waiter.set_exception(ConnectionError(f"closed with {code}"))
        self.waiters.clear()

    async def sync(self, timeout: float = 60.0) -> None:
        assert self.ws is not None
        self.sentinels += 1
        key = f"sentinel-{self.sentinels}"
        waiter = asyncio.get_running_loop().create_future()
        self.waiters[key] = waiter
        await self.ws.send(json.dumps({"jsonrpc": "2.0", "method": "ping", "id": key}))
        await asyncio.wait_for(waiter, timeout)

    async def run(self, maker: FrameMaker, count: int) -> None:
        await self.open()
        sent = 0
        while sent < count:
            kind, frame = maker.next()
            try:
                assert self.ws is not None
                await self.ws.send(frame)
                sent += 1
                self.tally.frames += 1
                self.tally.categories[kind] += 1
                if sent % self.window == 0:
                    await self.sync()
            except (ConnectionClosed, ConnectionError):
                await self.reopen()
        with contextlib.suppress(ConnectionClosed, ConnectionError):
            await self.sync()
        await self.close()

    async def reopen(self) -> None:
        await self.close()
        self.tally.reconnects += 1
        await self.open()

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            await self.reader
        self.ws = self.reader = None


async def discover(url: str) -> list[dict[str, Any]]:
    async with connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"jsonrpc": "2.0", "method": "rpc.discover", "id": 1}))
        doc = json.loads(await ws.recv())
    methods: list[dict[str, Any]] = doc["result"]["methods"]
    return methods


def log_findings(log_path: Path) -> dict[str, Any]:
    """Tracebacks (with their last lines) and ERROR lines of the daemon's JSON log."""
    tracebacks: list[str] = []
    errors: Counter[str] = Counter()
    for line in log_path.read_text("utf-8", "replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            if "Traceback (most recent call last)" in line:
                tracebacks.append(line[:200])
            continue
        if not isinstance(entry, dict):
            continue
        if entry.get("level") in ("ERROR", "CRITICAL"):
            errors[str(entry.get("msg"))[:120]] += 1
        exc = entry.get("exc_info") or entry.get("exception") or entry.get("exc")
        if exc:
            tail = str(exc).strip().splitlines()[-3:]
            tracebacks.append(f"{entry.get('msg')}: {' | '.join(tail)}"[:400])
    return {"tracebacks": tracebacks, "error_lines": dict(errors.most_common(15))}


class RssSampler:
    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self.task: asyncio.Task[None] | None = None

    def now(self) -> int:
        rss = int(self.process.memory_info().rss)
        self.peak = max(self.peak, rss)
        return rss

    async def sample(self) -> None:
        while True:
            with contextlib.suppress(psutil.Error):
                self.now()
            await asyncio.sleep(0.5)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp_name:
        tmp = Path(tmp_name)
        raw = deep_merge(
            daemon_config(tmp),
            {
                "server": {"rate_limit": {"enabled": False}},
                "auth": {"failed_auth_limit": 10000, "failed_auth_window": 1},
            },
        )
        config = build_config(raw)
        config_file = tmp / "config.yaml"
        config_file.write_text(yaml.safe_dump(raw))
        config.storage.state_dir.mkdir(parents=True, mode=0o700)
        admin_key, _ = ApiKeyStore(config.api_keys_file).create("fuzz", Role.ADMIN)
        daemon = await Daemon.start(config_file, tmp / "daemon.log")
        tally = Tally()
        sampler = RssSampler(daemon.pid)
        try:
            methods = await discover(daemon.ws_url)
            maker = FrameMaker(methods, rng, admin_key, config.server.max_message_bytes)
            rss_before = sampler.now()
            sampler.task = asyncio.create_task(sampler.sample())
            per_connection = args.frames // args.connections
            connections = [
                FuzzConnection(daemon.ws_url, admin_key if n % 2 == 0 else None, tally, args.window)
                for n in range(args.connections)
            ]
            began = time.perf_counter()
            await asyncio.gather(*(c.run(maker, per_connection) for c in connections))
            elapsed = time.perf_counter() - began
            sampler.task.cancel()
            alive = daemon.proc.returncode is None
            rss_after = sampler.now() if alive else 0
            # After the load: does the daemon still answer?
            still_answers = alive and bool(await discover(daemon.ws_url))
        finally:
            if sampler.task is not None:
                sampler.task.cancel()
            exit_code = await daemon.stop()
        findings = log_findings(tmp / "daemon.log")
        if args.keep_log:
            shutil.copyfile(tmp / "daemon.log", args.keep_log)
    crashed = (
        not alive
        or tally.closes.get("1011", 0) > 0
        or len(findings["tracebacks"]) > 0
        or tally.codes.get(-1, 0) > 0
    )
    return {
        "frames": tally.frames,
        "connections": args.connections,
        "seed": args.seed,
        "seconds": round(elapsed, 1),
        "frames_per_s": round(tally.frames / elapsed, 1),
        "answers": tally.answers,
        "notifications": tally.notifications,
        "by_code": {str(k): v for k, v in sorted(tally.codes.items())},
        "internal_errors": tally.codes.get(-32603, 0),
        "internal_samples": tally.internal,
        "closes": dict(tally.closes),
        "reconnects": tally.reconnects,
        "categories": dict(tally.categories),
        "daemon_alive": alive,
        "daemon_answers_after": still_answers,
        "daemon_exit_code": exit_code,
        "tracebacks": len(findings["tracebacks"]),
        "traceback_samples": findings["tracebacks"][:10],
        "error_lines": findings["error_lines"],
        "rss_mib": {
            "before": round(rss_before / 2**20, 1),
            "peak": round(sampler.peak / 2**20, 1),
            "after": round(rss_after / 2**20, 1),
        },
        "crashed": crashed,
    }


def table(report: dict[str, Any]) -> str:
    rss = report["rss_mib"]
    lines = [
        f"frames sent           {report['frames']:,} over {report['connections']} connections "
        f"in {report['seconds']} s ({report['frames_per_s']:,} frames/s, seed {report['seed']})",
        f"answers               {report['answers']:,} (+{report['notifications']} notifications)",
        f"answers by code       {report['by_code']}   (0 = result)",
        f"-32603 answers        {report['internal_errors']}",
        f"connection closes     {report['closes']}   reconnects {report['reconnects']}",
        f"tracebacks in log     {report['tracebacks']} {report['traceback_samples']}",
        f"ERROR lines in log    {report['error_lines']}",
        f"daemon alive after    {report['daemon_alive']} "
        f"(answers: {report['daemon_answers_after']}, "
        f"exit code at SIGTERM {report['daemon_exit_code']})",
        f"RSS MiB               before {rss['before']}  peak {rss['peak']}  after {rss['after']}",
        f"verdict               {'CRASH' if report['crashed'] else 'no crash'}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=positive_int, default=100_000)
    parser.add_argument("--connections", type=positive_int, default=8)
    parser.add_argument("--window", type=positive_int, default=64, help="frames per sentinel")
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    parser.add_argument("--keep-log", metavar="FILE", help="copy the daemon's log there")
    args = parser.parse_args(argv)
    report = asyncio.run(run(args))
    print(table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 1 if report["crashed"] or report["internal_errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
