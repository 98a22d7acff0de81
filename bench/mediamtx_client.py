"""MediaMTX API client: the h11 client against the aiohttp client it replaced, interleaved.

A real MediaMTX (``mediamtx`` on PATH; ``--server fake`` or no binary: the aiohttp fake of
``tests/support/fake_mediamtx.py``) with ``--paths`` configured paths. Two
:class:`MediaMTXClient` objects call ``list_paths()`` (``GET /v3/paths/list`` and the
pydantic validation of the answer) one call at a time, in alternating blocks of
``--calls / --blocks`` calls each (the order of the two clients swaps every block, so drifts
of the machine fall on both alike):

* ``h11``: the client as shipped (camera_service/mediamtx/http_client.py);
* ``aiohttp``: the same class with the previous transport, an ``aiohttp.ClientSession``
  (the code of ``MediaMTXClient._request`` before the change, kept here verbatim).

Both reuse keep-alive connections. Reported per client: latency p50/p99/mean and this
process's CPU per call, and the h11/aiohttp ratios. Also the resident memory of a fresh
interpreter after ``import camera_service.mediamtx.client``, without and with aiohttp
imported besides (what the old client module pulled in).

    python -m bench.mediamtx_client                       # 2000 calls per client, ~10 s
    python -m bench.mediamtx_client --loop uvloop --json -
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from bench.common import (
    REPO_ROOT,
    add_json_option,
    add_loop_option,
    format_table,
    latency_summary_ms,
    log_stream,
    positive_int,
    publish,
    run_on_loop,
    subprocess_env,
)
from camera_service.mediamtx.client import (
    MediaMTXClient,
    MediaMTXUnavailable,
    _status_error,
)
from camera_service.mediamtx.pathconf import camera_path_conf
from tests.support.fake_mediamtx import FakeMediaMTX
from tests.support.real_mediamtx import RealMediaMTX

CLIENTS = ("h11", "aiohttp")
WARMUP_CALLS = 50

RSS_SCRIPT = """
import sys
def rss_kb():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS'):
                return int(line.split()[1])
start = rss_kb()
import camera_service.mediamtx.client
if sys.argv[1] == 'with-aiohttp':
    import aiohttp
print(start, rss_kb(), 'aiohttp' in sys.modules)
"""


class AiohttpMediaMTXClient(MediaMTXClient):
    """The MediaMTX client on its previous transport, for comparison."""

    def __init__(self, base_url: str, *, timeout: float) -> None:
        super().__init__(base_url, timeout=timeout)
        self._aiohttp: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._aiohttp is not None:
            await self._aiohttp.close()
            self._aiohttp = None

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        request_timeout: float | None = None,
    ) -> str:
        if self._aiohttp is None:
            self._aiohttp = aiohttp.ClientSession(
                headers={"Accept": "application/json"}, raise_for_status=False
            )
        url = self.base_url + path
        what = f"{method} {path}"
        client_timeout = aiohttp.ClientTimeout(
            total=request_timeout if request_timeout is not None else self._timeout
        )
        try:
            async with self._aiohttp.request(
                method,
                url,
                json=dict(body) if body is not None else None,
                params=dict(params) if params else None,
                timeout=client_timeout,
            ) as resp:
                text = await resp.text()
                status = resp.status
        except TimeoutError as exc:
            raise MediaMTXUnavailable(f"{what}: timed out") from exc
        except aiohttp.ClientError as exc:
            raise MediaMTXUnavailable(f"{what}: {exc.__class__.__name__}: {exc}") from exc
        if status >= 300:
            raise _status_error(status, text, what)
        return text


@contextlib.asynccontextmanager
async def api_server(kind: str, workdir: Path, paths: int) -> AsyncIterator[str]:
    """The API URL of a MediaMTX (real or fake) with ``paths`` configured paths."""
    if kind == "real":
        async with RealMediaMTX(workdir) as server:
            async with MediaMTXClient(server.api_url) as setup:
                for i in range(paths):
                    conf = camera_path_conf("testsrc2=size=320x240:rate=10", "lavfi")
                    await setup.add_config_path(f"bench{i}", conf)
            yield server.api_url
    else:
        async with FakeMediaMTX() as fake:
            for i in range(paths):
                fake.set_config_path(f"bench{i}")
            yield fake.url


async def timed_block(client: MediaMTXClient, calls: int, latencies: list[int]) -> int:
    """``calls`` sequential list_paths(); returns this process's CPU time (ns)."""
    cpu0 = time.process_time_ns()
    for _ in range(calls):
        t0 = time.perf_counter_ns()
        await client.list_paths()
        latencies.append(time.perf_counter_ns() - t0)
    return time.process_time_ns() - cpu0


def import_rss(variant: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", RSS_SCRIPT, variant],
        cwd=REPO_ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    start, end, has_aiohttp = proc.stdout.split()
    return {
        "rss_mb": round(int(end) / 1024, 1),
        "delta_mb": round((int(end) - int(start)) / 1024, 1),
        "aiohttp_loaded": has_aiohttp == "True",
    }


async def run(args: argparse.Namespace, log: TextIO) -> dict[str, Any]:
    kind = args.server
    if kind == "real" and shutil.which("mediamtx") is None:
        print("mediamtx is not on PATH: using the fake server", file=log)
        kind = "fake"
    per_block = max(1, args.calls // args.blocks)
    latencies: dict[str, list[int]] = {name: [] for name in CLIENTS}
    cpu_ns = dict.fromkeys(CLIENTS, 0)
    with tempfile.TemporaryDirectory(prefix="bench-mtx-client-") as tmp:
        async with api_server(kind, Path(tmp), args.paths) as url:
            clients: dict[str, MediaMTXClient] = {
                "h11": MediaMTXClient(url, timeout=5.0),
                "aiohttp": AiohttpMediaMTXClient(url, timeout=5.0),
            }
            try:
                items = len((await clients["h11"].list_paths()).items)
                for client in clients.values():  # warm-up: connections, first validations
                    await timed_block(client, WARMUP_CALLS, [])
                for block in range(args.blocks):
                    order = CLIENTS if block % 2 == 0 else CLIENTS[::-1]
                    for name in order:
                        cpu_ns[name] += await timed_block(clients[name], per_block, latencies[name])
                    print(f"block {block + 1}/{args.blocks} done", file=log)
            finally:
                for client in clients.values():
                    await client.close()
    figures: dict[str, Any] = {}
    for name in CLIENTS:
        figures[name] = {
            **latency_summary_ms(latencies[name]),
            "calls": len(latencies[name]),
            "cpu_us_per_call": round(cpu_ns[name] / 1000 / len(latencies[name]), 1),
        }
    new, old = figures["h11"], figures["aiohttp"]
    ratios = {
        key: round(new[key] / old[key], 3) if old[key] else 0.0
        for key in ("p50_ms", "p99_ms", "mean_ms", "cpu_us_per_call")
    }
    return {
        "server": kind,
        "loop": args.loop,
        "paths": args.paths,
        "paths_listed": items,
        "clients": figures,
        "h11_over_aiohttp": ratios,
        "import_rss": {
            "client_module": import_rss("alone"),
            "client_module_plus_aiohttp": import_rss("with-aiohttp"),
        },
    }


def table(report: dict[str, Any]) -> str:
    rows = []
    for name in CLIENTS:
        f = report["clients"][name]
        rows.append(
            [
                name,
                str(f["calls"]),
                f"{f['p50_ms']:.3f}",
                f"{f['p99_ms']:.3f}",
                f"{f['mean_ms']:.3f}",
                f"{f['cpu_us_per_call']:.1f}",
            ]
        )
    r = report["h11_over_aiohttp"]
    rows.append(
        [
            "h11/aiohttp",
            "",
            f"{r['p50_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            f"{r['mean_ms']:.2f}",
            f"{r['cpu_us_per_call']:.2f}",
        ]
    )
    rss = report["import_rss"]
    head = (
        f"GET /v3/paths/list ({report['paths_listed']} paths) against the {report['server']} "
        f"MediaMTX, {report['loop']} loop"
    )
    foot = (
        f"RSS after import camera_service.mediamtx.client: "
        f"{rss['client_module']['rss_mb']} MB (aiohttp loaded: "
        f"{rss['client_module']['aiohttp_loaded']}); with aiohttp imported too: "
        f"{rss['client_module_plus_aiohttp']['rss_mb']} MB"
    )
    body = format_table(["client", "calls", "p50 ms", "p99 ms", "mean ms", "CPU µs/call"], rows)
    return f"{head}\n{body}\n{foot}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=positive_int, default=2000, help="calls per client")
    parser.add_argument("--blocks", type=positive_int, default=10, help="interleaved blocks")
    parser.add_argument("--paths", type=positive_int, default=10, help="configured paths")
    parser.add_argument(
        "--server",
        choices=("real", "fake"),
        default="real",
        help="real MediaMTX (mediamtx on PATH; else the fake) or the aiohttp fake",
    )
    add_loop_option(parser)
    add_json_option(parser)
    args = parser.parse_args(argv)
    report = run_on_loop(run(args, log_stream(args.json)), args.loop)
    publish(report, table(report), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
