"""Live-frame pieces without processes: the mpjpeg parser, viewers that skip, URL tokens."""

from __future__ import annotations

import asyncio

import pytest

from camera_service.auth.url_tokens import (
    UrlTokenError,
    make_camera_token,
    verify_camera_token,
)
from camera_service.media.frames import FrameHub, MpjpegParser, Viewer, _Feed, build_mjpeg_args
from camera_service.media.source import CaptureSource


def part(body: bytes) -> bytes:
    head = f"--ffmpeg\r\nContent-type: image/jpeg\r\nContent-length: {len(body)}\r\n\r\n"
    return head.encode() + body + b"\r\n"


def test_parser_splits_parts_fed_in_any_chunks() -> None:
    stream = part(b"\xff\xd8one\xff\xd9") + part(b"\xff\xd8two\xff\xd9") + part(b"\xff\xd8x")
    for size in (1, 3, 7, len(stream)):
        parser = MpjpegParser(1024)
        frames: list[bytes] = []
        for i in range(0, len(stream), size):
            frames += parser.feed(stream[i : i + size])
        assert frames == [b"\xff\xd8one\xff\xd9", b"\xff\xd8two\xff\xd9", b"\xff\xd8x"]


@pytest.mark.parametrize(
    "data, rule",
    [
        (part(b"x" * 2000), "over the limit"),
        (b"--ffmpeg\r\nContent-type: image/jpeg\r\n\r\nabc", "without Content-length"),
        (b"--ffmpeg\r\nContent-length: many\r\n\r\n", "bad mpjpeg"),
        (b"x" * 5000, "header too long"),
    ],
)
def test_parser_refuses_bad_or_oversized_parts(data: bytes, rule: str) -> None:
    with pytest.raises(ValueError, match=rule):
        MpjpegParser(1024).feed(data)


async def test_a_slow_viewer_gets_the_newest_frame_and_nothing_queues() -> None:
    feed = _Feed("cam0")
    feed.task = asyncio.create_task(asyncio.sleep(30))  # a running reader
    try:
        viewer = Viewer(FrameHub.__new__(FrameHub), feed)
        feed.publish(b"first")
        assert await viewer.next(1.0) == b"first"
        for n in range(100):  # the viewer is busy; the feed keeps one frame only
            feed.publish(f"frame {n}".encode())
        assert await viewer.next(1.0) == b"frame 99"
        waiter = asyncio.create_task(viewer.next(5.0))
        await asyncio.sleep(0)
        assert not waiter.done()  # nothing new: it waits for the next frame
        feed.publish(b"next")
        assert await waiter == b"next"
    finally:
        feed.task.cancel()


def test_camera_tokens_open_one_camera_until_they_expire() -> None:
    secret = b"k" * 32
    token = make_camera_token(secret, "cam0", 60, now=1000)
    assert verify_camera_token(secret, token, "cam0", now=1059) == 1060
    with pytest.raises(UrlTokenError, match="this camera"):
        verify_camera_token(secret, token, "cam1", now=1000)
    with pytest.raises(UrlTokenError, match="expired"):
        verify_camera_token(secret, token, "cam0", now=1060)
    with pytest.raises(UrlTokenError, match="malformed"):
        verify_camera_token(secret, token + "x", "cam0", now=1000)
    with pytest.raises(UrlTokenError, match="this camera"):
        verify_camera_token(b"other" * 8, token, "cam0", now=1000)


def test_mjpeg_args_skip_warm_up_frames_of_v4l2_cameras_only() -> None:
    v4l2 = CaptureSource("camera0", "/dev/video0", "v4l2", exclusive=True)
    lavfi = CaptureSource("cam0", "testsrc2", "lavfi")
    chain = build_mjpeg_args("ffmpeg", v4l2, 10, 5, warmup_frames=5)
    assert chain[chain.index("-vf") + 1].startswith("select=gte(n\\,5),fps=10")
    plain = build_mjpeg_args("ffmpeg", lavfi, 10, 5, warmup_frames=5)
    assert plain[plain.index("-vf") + 1] == "fps=10:round=up,scale=out_range=full"
    assert plain[-3:] == ["-f", "mpjpeg", "pipe:1"]
