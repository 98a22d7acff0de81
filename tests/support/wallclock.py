"""A lavfi camera whose frames carry the wall clock, and the reader of that clock.

Every frame shows the wall-clock milliseconds (modulo 2^24, about 4.7 hours) at which FFmpeg
generated it, as 24 black or white squares of 40x40 pixels: bit i is square i, row by row,
eight to a row. The time comes from ``setpts=RTCTIME`` (the moment the lavfi source made the
frame, which with ``-re`` is when the camera "captured" it); the timestamps are then put back
to the frame count, so the recorder sees an ordinary constant-rate camera.
Large squares survive any H.264 encoding, so the first frame of a segment tells the wall time
that segment really starts at.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

WIDTH, HEIGHT, BITS, CELL = 320, 240, 24, 40
_MODULUS = 1 << BITS


def wallclock_graph(fps: int = 15) -> str:
    """The lavfi input of the camera."""
    boxes = [
        f"drawbox=x={(i % 8) * CELL + 4}:y={(i // 8) * CELL + 4}:w={CELL - 8}:h={CELL - 8}"
        f":color=white:t=fill:enable='mod(floor(t*1000/{1 << i})\\,2)'"
        for i in range(BITS)
    ]
    return (
        f"color=c=black:size={WIDTH}x{HEIGHT}:rate={fps},settb=1/1000000,setpts=RTCTIME,"
        + ",".join(boxes)
        + f",settb=1/{fps},setpts=N"
    )


def decode_stamp(gray: bytes, near: float) -> float:
    """Epoch seconds shown by one gray frame; ``near`` (within ~2 h) resolves the modulus."""
    if len(gray) < WIDTH * HEIGHT:
        raise ValueError(f"a {WIDTH}x{HEIGHT} gray frame has {WIDTH * HEIGHT} bytes")
    value = 0
    for i in range(BITS):
        x, y = (i % 8) * CELL + CELL // 2, (i // 8) * CELL + CELL // 2
        if gray[y * WIDTH + x] > 128:
            value |= 1 << i
    near_ms = round(near * 1000)
    offset = (value - near_ms + _MODULUS // 2) % _MODULUS - _MODULUS // 2
    return (near_ms + offset) / 1000


def first_frame_time(path: Path, near: float, ffmpeg: str = "ffmpeg") -> float:
    """Wall time at which the first frame of a recording was captured."""
    out = subprocess.run(
        [
            *(ffmpeg, "-v", "error", "-i", str(path), "-frames:v", "1"),
            *("-f", "rawvideo", "-pix_fmt", "gray", "-"),
        ],
        capture_output=True,
        timeout=30,
        check=True,
    )
    return decode_stamp(out.stdout, near)
