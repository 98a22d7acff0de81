"""Supervision of the daemon's background loops: a crash is logged and the loop restarted.

Every long-running background task of the daemon (session sweep, systemd watchdog, camera
discovery and error re-probe, MediaMTX monitor and path maintenance, recording segment
watchers, storage guard, retention) runs under :func:`supervised`. An exception that escapes
the loop body is logged with its traceback (`background loop <name> crashed`) and the body is
started again after `RESTART_DELAY_S`, doubling while it keeps crashing within
`MAX_RESTART_DELAY_S` of its start, up to that cap. A body that returns is done; cancellation
(shutdown) passes straight through.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

RESTART_DELAY_S = 1.0
MAX_RESTART_DELAY_S = 30.0

crashes: Counter[str] = Counter()  # per loop name, for get_metrics and tests


async def supervised(name: str, body: Callable[[], Awaitable[None]]) -> None:
    """Run `body()` until it returns, restarting it after each crash."""
    loop = asyncio.get_running_loop()
    wait = RESTART_DELAY_S
    while True:
        started = loop.time()
        try:
            await body()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            crashes[name] += 1
            if loop.time() - started >= MAX_RESTART_DELAY_S:
                wait = RESTART_DELAY_S  # it ran well for a while: start over with short waits
            log.exception(
                "background loop %s crashed; restarting in %.1f s",
                name,
                wait,
                extra={"loop": name, "crashes": crashes[name]},
            )
        await asyncio.sleep(wait)
        wait = min(MAX_RESTART_DELAY_S, wait * 2)


def start_supervised(name: str, body: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
    """`asyncio.create_task` of the supervised loop, named `name`."""
    return asyncio.create_task(supervised(name, body), name=name)
