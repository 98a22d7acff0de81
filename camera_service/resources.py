"""Process resources: the file-descriptor limit, and what happens when it is reached anyway.

`raise_fd_limit()` lifts the soft RLIMIT_NOFILE to the hard limit at start (distributions
default to a soft 1024, which a few hundred slow connections plus FFmpeg pipes exhaust).
Under systemd the unit sets `LimitNOFILE`, and its system-call filter refuses setrlimit;
either way the daemon logs the limit it runs with.

`install_accept_error_handler()` replaces the event loop's report of a failed `accept()`
(EMFILE, ENFILE, ENOBUFS, ENOMEM): asyncio already backs off by pausing that listener for a
second after each failure; the report is rate-limited to one line per 10 s carrying the
number of failures it stands for, instead of one traceback per failure. (uvloop does not
report these: libuv drops the waiting connections through a reserve descriptor.)
"""

from __future__ import annotations

import asyncio
import logging
import resource
from typing import Any

from camera_service.transport.admission import RateLimitedLog

log = logging.getLogger(__name__)

FD_LIMIT_CAP = 1 << 20  # never ask for more than this, even if the hard limit is unlimited
ACCEPT_ERROR = "socket.accept() out of system resource"


def raise_fd_limit(cap: int = FD_LIMIT_CAP) -> tuple[int, int]:
    """Raise the soft fd limit to the hard one (at most `cap`); (before, after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError) as exc:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, exc)
            return soft, soft
        log.info("open-file limit raised from %d to %d", soft, target)
        return soft, target
    log.info("open-file limit %d", soft)
    return soft, soft


def install_accept_error_handler(
    loop: asyncio.AbstractEventLoop, limited: RateLimitedLog | None = None
) -> RateLimitedLog:
    """Rate-limit the loop's `accept()` failure reports; everything else as before."""
    limited = limited or RateLimitedLog(log)
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if str(context.get("message", "")).startswith(ACCEPT_ERROR):
            limited.warning(
                "accept",
                "accept() failed: %s; that listener pauses 1 s (open-file limit reached?)",
                context.get("exception"),
            )
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
    return limited
