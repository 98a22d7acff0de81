"""Which asyncio event loop the daemon runs on (`server.event_loop`).

`auto` takes uvloop when it is importable and asyncio's default loop otherwise; `uvloop` insists
on it (a clear error when it is missing); `asyncio` never uses it. docs/performance.md ("Event
loop") has the measurement behind the default.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

EventLoopChoice = Literal["auto", "asyncio", "uvloop"]
LoopFactory = Callable[[], asyncio.AbstractEventLoop]
T = TypeVar("T")


class EventLoopUnavailable(RuntimeError):
    """`server.event_loop: uvloop` was asked for but uvloop cannot be imported."""


def loop_factory(choice: EventLoopChoice) -> tuple[LoopFactory | None, str]:
    """The factory for `asyncio.Runner` (None: asyncio's default) and the loop's name."""
    if choice == "asyncio":
        return None, "asyncio"
    try:
        import uvloop
    except ImportError as exc:
        if choice == "uvloop":
            raise EventLoopUnavailable(
                "server.event_loop is 'uvloop' but uvloop is not installed "
                "(pip install uvloop, or set server.event_loop: auto)"
            ) from exc
        return None, "asyncio"
    return uvloop.new_event_loop, "uvloop"


def run(main: Coroutine[Any, Any, T], choice: EventLoopChoice) -> T:
    """`asyncio.run(main)` on the chosen loop."""
    factory, _ = loop_factory(choice)
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def running_loop_name() -> str:
    """'uvloop' or 'asyncio': the loop this coroutine runs on."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.startswith("uvloop") else "asyncio"
