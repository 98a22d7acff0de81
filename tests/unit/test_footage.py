"""Footage bookkeeping of the NVR: held windows, files being read, motion-buffer expiry."""

from __future__ import annotations

from pathlib import Path

import pytest

from camera_service.media.footage import Footage
from camera_service.storage import segments as seg


def _segment(start: float, end: float, run: str = "m000001", device: str = "cam") -> seg.Segment:
    name = f"{device}_{int(start)}_{run}.mp4"
    return seg.Segment(device, name, Path("/x") / name, run, start, end, 100, True)


def test_an_open_window_holds_everything_after_its_start_of_its_camera_only() -> None:
    footage = Footage()
    footage.hold("event", "cam", 100.0)
    assert not footage.held(_segment(80.0, 90.0))
    assert footage.held(_segment(95.0, 105.0))
    assert footage.held(_segment(1000.0, 1010.0))
    assert not footage.held(_segment(95.0, 105.0, device="other"))


def test_a_closed_window_ends_and_a_released_one_holds_nothing() -> None:
    footage = Footage()
    footage.hold("event", "cam", 100.0)
    footage.close("event", 120.0)
    footage.close("unknown", 500.0)  # nothing held under that key: no effect
    assert footage.held(_segment(115.0, 125.0))
    assert not footage.held(_segment(120.0, 130.0))
    footage.release("event")
    footage.release("event")  # twice is harmless
    assert not footage.held(_segment(115.0, 125.0))


def test_files_stay_marked_while_any_reader_is_in_its_block_even_on_error() -> None:
    footage = Footage()
    a, b = Path("/x/a.mp4"), Path("/x/b.mp4")
    with footage.read([a, b]):
        with footage.read([a]):
            assert footage.reading() == {a, b}
        assert footage.reading() == {a, b}  # the outer reader still reads a
        with pytest.raises(RuntimeError), footage.read([b]):
            raise RuntimeError("clip failed")
        assert footage.reading() == {a, b}
    assert footage.reading() == set()


def test_buffer_expiry_keeps_held_recent_chosen_and_continuous_segments() -> None:
    footage = Footage()
    footage.hold("event", "cam", 50.0)
    footage.close("event", 70.0)
    old = _segment(0.0, 10.0)
    needed = _segment(45.0, 55.0)
    continuous = _segment(20.0, 30.0, run="c000001")
    chosen = _segment(30.0, 40.0)
    recent = _segment(90.0, 100.0)
    segments = [old, needed, continuous, chosen, recent]
    expired = footage.buffer_expired("cam", segments, horizon=95.0, chosen={chosen.path})
    assert expired == [old]
    # a window of another camera does not keep this camera's buffer
    footage.hold("other", "cam2", 0.0)
    assert footage.buffer_expired("cam", [old], horizon=95.0, chosen=set()) == [old]
