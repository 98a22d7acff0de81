"""Motion detection on frames the camera's single reader already decodes.

The continuous-recording FFmpeg process has one more output: the picture at ``motion.fps``
frames per second, scaled to ``motion.width`` x ``motion.height`` grey (area averaging, which
also smooths sensor noise) and passed through ``tblend=all_mode=difference``, so each frame it
sends is already ``|frame - previous frame|`` per pixel. One frame is one UDP datagram to
loopback: FFmpeg never blocks on it (a busy daemon just misses frames).

Here, per frame: pixels whose change exceeds ``pixel_threshold`` are counted inside the
analysed area (zones minus mask) with two C-speed byte operations (``bytes.translate`` to 0/1,
then an AND with the area mask as big integers and ``int.bit_count``). The fraction of moving
pixels is the frame's score; :class:`MotionTracker` turns scores into events.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from camera_service.config import MotionConfig, MotionZone

log = logging.getLogger(__name__)

MAX_DATAGRAM = 65507


def ffmpeg_motion_filter(cfg: MotionConfig) -> str:
    return (
        f"fps={cfg.fps:g},scale={cfg.width}:{cfg.height}:flags=area,format=gray,"
        "tblend=all_mode=difference"
    )


def area_mask(
    width: int, height: int, zones: Sequence[MotionZone], mask: Sequence[MotionZone]
) -> bytes:
    """One byte per pixel: 1 where motion counts, 0 elsewhere."""
    rows = [bytearray(width) for _ in range(height)]
    fill = zones if zones else [MotionZone(x=0, y=0, width=1, height=1)]
    for value, rects in ((1, fill), (0, mask)):
        for rect in rects:
            x0, y0 = int(rect.x * width), int(rect.y * height)
            x1 = min(width, max(x0 + 1, round((rect.x + rect.width) * width)))
            y1 = min(height, max(y0 + 1, round((rect.y + rect.height) * height)))
            for row in rows[y0:y1]:
                row[x0:x1] = bytes([value]) * (x1 - x0)
    return b"".join(bytes(row) for row in rows)


def min_area_fraction(sensitivity: int) -> float:
    """Sensitivity 1..100 → smallest moving fraction of the area that counts as motion."""
    return (101 - sensitivity) / 1000


class MotionScorer:
    """Scores difference frames: the moving fraction of the analysed area (0..1)."""

    def __init__(self, cfg: MotionConfig) -> None:
        self.width, self.height = cfg.width, cfg.height
        self.frame_bytes = cfg.width * cfg.height
        mask = area_mask(cfg.width, cfg.height, cfg.zones, cfg.mask)
        self._mask = int.from_bytes(mask, "big")
        self._area = mask.count(1)
        threshold = cfg.pixel_threshold
        self._table = bytes(1 if value > threshold else 0 for value in range(256))

    def score(self, diff: bytes) -> float | None:
        """None for a datagram that is not one whole frame."""
        if len(diff) != self.frame_bytes or self._area == 0:
            return None
        moving = int.from_bytes(diff.translate(self._table), "big") & self._mask
        return moving.bit_count() / self._area


@dataclass
class MotionEventState:
    """One event as the tracker sees it (times in epoch seconds)."""

    start: float
    last_active: float
    peak: float
    confirmed: bool = False
    end: float | None = None


@dataclass
class MotionTracker:
    """Scores over time → events: starts after ``min_duration`` s of motion, ends after
    ``end_after`` s without. Pure: the caller supplies the times."""

    threshold: float
    min_duration: float
    end_after: float
    on_start: Callable[[MotionEventState, float], None]
    on_end: Callable[[MotionEventState], None]
    current: MotionEventState | None = field(default=None)

    @classmethod
    def from_config(
        cls,
        cfg: MotionConfig,
        on_start: Callable[[MotionEventState, float], None],
        on_end: Callable[[MotionEventState], None],
    ) -> MotionTracker:
        return cls(
            min_area_fraction(cfg.sensitivity), cfg.min_duration, cfg.end_after, on_start, on_end
        )

    def feed(self, when: float, score: float) -> None:
        active = score >= self.threshold
        event = self.current
        if event is None:
            if active:
                self.current = event = MotionEventState(when, when, score)
                self._maybe_confirm(event, when, score)
            return
        if active:
            event.last_active = when
            event.peak = max(event.peak, score)
            self._maybe_confirm(event, when, score)
            return
        quiet = when - event.last_active
        if not event.confirmed:
            # A blip shorter than min_duration: forget it once the motion pauses.
            if quiet >= min(self.end_after, max(self.min_duration, 1e-9)):
                self.current = None
            return
        if quiet >= self.end_after:
            self.finish()

    def _maybe_confirm(self, event: MotionEventState, when: float, score: float) -> None:
        if not event.confirmed and when - event.start >= self.min_duration:
            event.confirmed = True
            self.on_start(event, score)

    def finish(self) -> None:
        """End the current event now (the stream stopped)."""
        event, self.current = self.current, None
        if event is not None and event.confirmed:
            event.end = event.last_active
            self.on_end(event)


class MotionReceiver(asyncio.DatagramProtocol):
    """Receives difference frames on a loopback UDP port; calls ``on_frame(data)``."""

    def __init__(self, on_frame: Callable[[bytes], None]) -> None:
        self._on_frame = on_frame
        self.frames = 0

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.frames += 1
        try:
            self._on_frame(data)
        except Exception:
            log.exception("motion analysis failed")


async def open_receiver(
    on_frame: Callable[[bytes], None],
) -> tuple[asyncio.DatagramTransport, MotionReceiver, int]:
    """A receiver on 127.0.0.1 and a free port; returns (transport, protocol, port)."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: MotionReceiver(on_frame), local_addr=("127.0.0.1", 0)
    )
    sock = transport.get_extra_info("socket")
    port = int(sock.getsockname()[1])
    return transport, protocol, port
