"""Probing a V4L2 node for discovery: timeout and retries; failures are data, never raised."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

from camera_service.cameras.model import Capabilities
from camera_service.cameras.v4l2_abi import DeviceVanishedError, ProbeError

log = logging.getLogger(__name__)


class Prober(Protocol):
    async def probe(self, device_path: str) -> Capabilities:
        """Capabilities of a node; raises ProbeError / DeviceVanishedError."""


@dataclass(frozen=True, slots=True)
class ProbeFailure:
    reason: str
    vanished: bool = False


async def probe_with_retries(
    prober: Prober,
    device_path: str,
    *,
    probe_timeout: float,
    probe_retries: int,
    retry_delay: float,
) -> Capabilities | ProbeFailure:
    """Probe with timeout and retries; failures are returned, never raised."""
    reason = "probe failed"
    for attempt in range(probe_retries + 1):
        if attempt:
            await asyncio.sleep(retry_delay)  # back off between attempts
        try:
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
            # that arrives as the probe completes, which would make Discovery.stop() hang
            async with asyncio.timeout(probe_timeout):
                return await prober.probe(device_path)
        except DeviceVanishedError as exc:
            return ProbeFailure(exc.reason, vanished=True)
        except ProbeError as exc:
            reason = exc.reason
        except TimeoutError:
            reason = f"probe timed out after {probe_timeout:g} s"
        except Exception as exc:
            log.exception("unexpected probe failure on %s", device_path)
            reason = f"probe failed: {exc}"
        log.info(
            "probing %s failed (attempt %d/%d): %s",
            device_path,
            attempt + 1,
            probe_retries + 1,
            reason,
        )
    return ProbeFailure(reason)
