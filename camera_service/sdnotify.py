"""systemd service notification (sd_notify) without a dependency.

Implements the datagram protocol of sd_notify(3): newline-separated ``KEY=VALUE`` lines sent to
the AF_UNIX socket named by ``$NOTIFY_SOCKET`` (a path, or an abstract name starting with ``@``).
Without the variable every call is a no-op, so the daemon runs the same in a terminal, in tests
and under ``Type=notify``.

Usage from the composition root::

    notifier = SystemdNotifier.from_env()
    ...                               # start servers, first camera scan
    notifier.ready("listening on :8002, 2 cameras")
    task = asyncio.create_task(watchdog_loop(notifier))
    ...
    notifier.stopping()

``watchdog_loop`` pings from the event loop itself, so a loop blocked by synchronous work stops
pinging and systemd (``WatchdogSec=``) kills and restarts the service.

The socket is non-blocking; send errors are logged (once per run of failures), never raised.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping

__all__ = ["SystemdNotifier", "watchdog_loop"]

log = logging.getLogger(__name__)

NOTIFY_SOCKET = "NOTIFY_SOCKET"
WATCHDOG_USEC = "WATCHDOG_USEC"
WATCHDOG_PID = "WATCHDOG_PID"

#: Longest STATUS= text sent; systemd shows it in `systemctl status`, one line.
MAX_STATUS_CHARS = 1024


def _socket_address(value: str) -> str | None:
    """Turn a ``$NOTIFY_SOCKET`` value into an AF_UNIX address, or None if unsupported."""
    if value.startswith("@"):
        return "\0" + value[1:]  # Linux abstract namespace
    if value.startswith("/"):
        return value
    return None  # e.g. "vsock:..." (systemd >= 253 in VMs): not needed on edge boxes


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat[:MAX_STATUS_CHARS]


class SystemdNotifier:
    """Sends sd_notify messages; a disabled one (no socket) accepts every call and does nothing.

    Methods return True when a datagram was handed to the kernel, False otherwise (disabled or a
    send error, which is logged).
    """

    def __init__(
        self,
        address: str | None,
        *,
        watchdog_usec: str | None = None,
        watchdog_pid: str | None = None,
    ) -> None:
        """``address`` is a raw ``$NOTIFY_SOCKET`` value (path or ``@abstract``) or None."""
        self._raw_address = address
        self._address = _socket_address(address) if address else None
        if address and self._address is None:
            log.warning("unsupported NOTIFY_SOCKET %r; systemd notifications disabled", address)
        self._watchdog_usec = watchdog_usec
        self._watchdog_pid = watchdog_pid
        self._sock: socket.socket | None = None
        self._failing = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SystemdNotifier:
        """Build from ``$NOTIFY_SOCKET`` / ``$WATCHDOG_USEC`` / ``$WATCHDOG_PID``.

        Without ``NOTIFY_SOCKET`` the result is disabled (``enabled`` is False) and every call is
        a no-op, so callers never need a None check.
        """
        env = os.environ if environ is None else environ
        return cls(
            env.get(NOTIFY_SOCKET) or None,
            watchdog_usec=env.get(WATCHDOG_USEC),
            watchdog_pid=env.get(WATCHDOG_PID),
        )

    @property
    def enabled(self) -> bool:
        return self._address is not None

    @property
    def address(self) -> str | None:
        """The ``$NOTIFY_SOCKET`` value in use (``@name`` for abstract sockets), or None."""
        return self._raw_address if self.enabled else None

    # -- messages -------------------------------------------------------------------------------

    def notify(self, **fields: str | int | float) -> bool:
        """Send one datagram of ``KEY=VALUE`` lines, e.g. ``notify(READY=1, STATUS="up")``.

        Keys are upper-cased; values must not contain newlines (STATUS text is flattened by
        :meth:`status`). Returns False when disabled or on a send error.
        """
        if not fields:
            return False
        lines = []
        for key, value in fields.items():
            text = str(value)
            if "\n" in text:
                raise ValueError(f"sd_notify value for {key} contains a newline")
            lines.append(f"{key.upper()}={text}")
        return self._send("\n".join(lines))

    def ready(self, status: str | None = None) -> bool:
        """``READY=1`` (with an optional ``STATUS=``): startup is complete."""
        if status is None:
            return self.notify(READY=1)
        return self.notify(READY=1, STATUS=_one_line(status))

    def status(self, text: str) -> bool:
        """``STATUS=text``: one line shown by ``systemctl status``."""
        return self.notify(STATUS=_one_line(text))

    def stopping(self, status: str | None = None) -> bool:
        """``STOPPING=1``: shutdown has begun."""
        if status is None:
            return self.notify(STOPPING=1)
        return self.notify(STOPPING=1, STATUS=_one_line(status))

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: keep-alive ping for ``WatchdogSec=``."""
        return self.notify(WATCHDOG=1)

    def extend_timeout(self, seconds: float) -> bool:
        """``EXTEND_TIMEOUT_USEC``: ask for more time during a slow start or stop."""
        return self.notify(EXTEND_TIMEOUT_USEC=max(0, int(seconds * 1_000_000)))

    def watchdog_interval(self) -> float | None:
        """The watchdog timeout in seconds from ``$WATCHDOG_USEC``, or None if not for us.

        None when notifications are disabled, the variable is absent or invalid, or
        ``$WATCHDOG_PID`` names another process (as sd_watchdog_enabled(3) does). Ping at half of
        it at least.
        """
        if not self.enabled or not self._watchdog_usec:
            return None
        try:
            usec = int(self._watchdog_usec)
        except ValueError:
            log.warning("ignoring invalid WATCHDOG_USEC=%r", self._watchdog_usec)
            return None
        if usec <= 0:
            return None
        if self._watchdog_pid:
            try:
                pid = int(self._watchdog_pid)
            except ValueError:
                log.warning("ignoring invalid WATCHDOG_PID=%r", self._watchdog_pid)
                return None
            if pid != os.getpid():
                return None
        return usec / 1_000_000

    # -- transport ------------------------------------------------------------------------------

    def _send(self, message: str) -> bool:
        if self._address is None:
            return False
        try:
            if self._sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                sock.setblocking(False)
                self._sock = sock
            self._sock.sendto(message.encode("utf-8"), self._address)
        except OSError as exc:
            if not self._failing:
                log.warning("sd_notify to %s failed: %s", self._raw_address, exc)
                self._failing = True
            else:
                log.debug("sd_notify to %s failed again: %s", self._raw_address, exc)
            return False
        if self._failing:
            log.info("sd_notify to %s works again", self._raw_address)
            self._failing = False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> SystemdNotifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SystemdNotifier(address={self.address!r})"


async def watchdog_loop(notifier: SystemdNotifier, interval: float | None = None) -> None:
    """Send ``WATCHDOG=1`` every ``interval / 2`` seconds until cancelled.

    ``interval`` is the watchdog timeout (default: :meth:`SystemdNotifier.watchdog_interval`).
    Returns at once when there is no watchdog. The pings run on the event loop, so a blocked loop
    stops them and systemd restarts the service.
    """
    if interval is None:
        interval = notifier.watchdog_interval()
    if interval is None or interval <= 0 or not notifier.enabled:
        return
    period = interval / 2
    loop = asyncio.get_running_loop()
    deadline = loop.time()
    while True:
        notifier.watchdog()
        # Fixed-rate schedule; after a stall, ping at once instead of bursting to catch up.
        deadline = max(deadline + period, loop.time())
        await asyncio.sleep(deadline - loop.time())
