"""Waiting on conditions that have no event to await (file sizes, process exits)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Poll `predicate` until it holds; raise TimeoutError naming `what` after `timeout` s.

    This is a bounded condition wait, not a fixed delay: it returns as soon as the
    condition holds, and the test never depends on how long that took."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() >= deadline:
            raise TimeoutError(f"condition not met within {timeout} s: {what}")
        await asyncio.sleep(0.02)
