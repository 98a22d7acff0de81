"""Pure parts of continuous recording: segment index, retention and roll-over plans, clip plans,
mode and event stores, motion scoring and event tracking."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from camera_service.config import ConfigError, MotionConfig, MotionZone, build_config
from camera_service.media.clips import NoFootage, concat_list, keyframe_at_or_before, plan_clip
from camera_service.media.errors import InvalidTarget
from camera_service.media.motion import MotionScorer, MotionTracker, area_mask, min_area_fraction
from camera_service.storage import segments as seg
from camera_service.storage.events import EventStore, MotionEvent
from camera_service.storage.modes import ModeSettings, ModeStore


def _segment(
    name: str,
    start: float,
    end: float,
    size: int = 100,
    complete: bool = True,
    run: str = "c000001",
    device: str = "cam",
) -> seg.Segment:
    return seg.Segment(device, name, Path("/x") / name, run, start, end, size, complete)


def _write_segment(directory: Path, name: str, size: int = 10, mtime: float | None = None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(b"x" * size)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


# --------------------------------------------------------------------------- index


def test_scan_uses_run_clock_and_list(tmp_path: Path) -> None:
    directory = tmp_path / "cam"
    seg.write_run(directory, seg.RunRecord("c0000aa", "cam", 1000.0, 10))
    names = [
        "cam_20261201T080000Z_c0000aa.mp4",
        "cam_20261201T080010Z_c0000aa.mp4",
        "cam_20261201T080020Z_c0000aa.mp4",
    ]
    for name in names:
        _write_segment(directory, name, mtime=1029.0)
    (directory / "c0000aa.csv").write_text(
        f"{names[0]},0.000000,10.066667\n{names[1]},10.066667,20.000000\n"
    )
    found = seg.scan_camera(tmp_path, "cam")
    assert [s.filename for s in found] == names
    assert (found[0].start, found[0].end) == (1000.0, pytest.approx(1010.066667))
    assert found[1].start == found[0].end  # consecutive segments meet exactly
    assert found[2].complete is False and found[2].start == pytest.approx(1020.0)
    assert found[2].end == pytest.approx(1029.0)  # being written: up to its last write
    assert seg.unlisted(directory, "c0000aa") == [names[2]]


def test_scan_ignores_foreign_and_malformed_files(tmp_path: Path) -> None:
    directory = tmp_path / "cam"
    _write_segment(directory, "other_20261201T080000Z_c0000aa.mp4")
    _write_segment(directory, "cam_2026.mp4")
    _write_segment(directory, "notes.txt")
    assert seg.scan_camera(tmp_path, "cam") == []
    assert seg.read_run(directory, "c0000aa") is None


def test_segment_list_parsing_skips_garbage() -> None:
    text = "a.mp4,0.0,1.5\nbroken line\nb.mp4,x,2\nc.mp4,1.5,3.0\n"
    assert seg.parse_segment_list(text) == {"a.mp4": (0.0, 1.5), "c.mp4": (1.5, 3.0)}


def test_empty_runs_are_removed_with_their_last_segment(tmp_path: Path) -> None:
    directory = tmp_path / "cam"
    name = "cam_20261201T080000Z_c0000aa.mp4"
    seg.write_run(directory, seg.RunRecord("c0000aa", "cam", 1000.0, 10))
    _write_segment(directory, name, size=7)
    seg.append_segment(directory, "c0000aa", name, 0.0, 10.0)
    [segment] = seg.scan_camera(tmp_path, "cam")
    assert seg.delete_segments([segment], protected=set()) == (1, 7)
    assert seg.runs_in(directory) == []
    assert not (directory / "c0000aa.csv").exists()


def test_delete_never_touches_protected(tmp_path: Path) -> None:
    directory = tmp_path / "cam"
    name = "cam_20261201T080000Z_c0000aa.mp4"
    _write_segment(directory, name)
    segment = seg.Segment("cam", name, directory / name, "c0000aa", 0, 10, 10, True)
    assert seg.delete_segments([segment], protected={directory / name}) == (0, 0)
    assert (directory / name).exists()


# --------------------------------------------------------------------------- plans


def test_retention_by_age_and_size() -> None:
    day = 86400.0
    now = 10 * day
    segments = [_segment(f"s{i}", i * day, i * day + 60, size=100) for i in range(10)]
    by_age = seg.plan_retention(segments, now=now, retain_days=3, retain_gb=None, protected=set())
    assert [s.filename for s in by_age] == [f"s{i}" for i in range(7)]  # ended before day 7
    by_size = seg.plan_retention(
        segments, now=now, retain_days=None, retain_gb=450 / seg.GB, protected={segments[0].path}
    )
    assert [s.filename for s in by_size] == ["s1", "s2", "s3", "s4", "s5", "s6"]


def test_rollover_takes_oldest_first_and_skips_protected() -> None:
    segments = [_segment(f"s{i}", i, i + 1, size=10) for i in (3, 1, 2, 0)]
    doomed = seg.plan_rollover(segments, 15, protected={Path("/x/s0")})
    assert [s.filename for s in doomed] == ["s1", "s2"]
    assert seg.plan_rollover(segments, 0, set()) == []


def test_clip_plan_cut_points() -> None:
    segments = [_segment("a", 100, 110), _segment("b", 110, 120), _segment("c", 120, 130)]
    plan = plan_clip(segments, 105, 125)
    assert [s.filename for s in plan.segments] == ["a", "b", "c"]
    assert plan.inpoint == pytest.approx(5) and plan.outpoint == pytest.approx(5)
    whole = plan_clip(segments, 50, 500)
    assert whole.inpoint == 0 and whole.outpoint is None
    script = concat_list(plan, keyframe=4.0)
    assert script.splitlines() == [
        "ffconcat version 1.0",
        "file '/x/a'",
        "inpoint 4.000000",
        "file '/x/b'",
        "file '/x/c'",
        "outpoint 5.000000",
    ]
    with pytest.raises(NoFootage):
        plan_clip(segments, 200, 300)
    with pytest.raises(InvalidTarget):
        plan_clip(segments, 120, 110)


def test_keyframe_choice() -> None:
    assert keyframe_at_or_before([0.0, 1.0, 2.0, 3.0], 2.5) == 2.0
    assert keyframe_at_or_before([0.0, 1.0, 2.0], 2.0) == 2.0
    assert keyframe_at_or_before([], 2.0) == 0.0


# --------------------------------------------------------------------------- stores


def test_mode_store_persists_and_rejects_garbage(tmp_path: Path) -> None:
    store = ModeStore(tmp_path)
    store.save_sync("cam", ModeSettings("continuous", 60, 5.0, 5.0))
    store.save_sync("other", ModeSettings("motion", 30, 2.0, 3.0))
    store.save_sync("other", ModeSettings("off", 30, 2.0, 3.0))
    again = ModeStore(tmp_path)
    assert again.all() == {"cam": ModeSettings("continuous", 60, 5.0, 5.0)}
    (tmp_path / "recording_modes.json").write_text(
        json.dumps(
            {
                "a": {"mode": "sometimes"},
                "b": {"mode": "continuous", "segment_seconds": 5, "pre_roll": 1, "post_roll": 1},
            }
        )
    )
    assert ModeStore(tmp_path).all() == {}


def test_event_store_keeps_newest_and_clips(tmp_path: Path) -> None:
    store = EventStore(tmp_path, max_events=10)
    for i in range(12):
        store.close_sync(MotionEvent(f"e{i}", "cam", 100.0 + i, 101.0 + i, 0.5))
    store.opened(MotionEvent("open", "cam", 500.0, None, 0.1))
    assert [e.id for e in store.all()][:2] == ["open", "e11"]
    assert store.attach_clip_sync("e11", "cam_motion.mp4") is not None
    reloaded = EventStore(tmp_path, max_events=10)
    ids = [e.id for e in reloaded.all()]
    assert ids == [f"e{i}" for i in range(11, 1, -1)]  # the open one was not persisted
    assert reloaded.get("e11") is not None and reloaded.get("e11").clip == "cam_motion.mp4"  # type: ignore[union-attr]


# --------------------------------------------------------------------------- config


def test_motion_overrides_and_limits(tmp_path: Path) -> None:
    config = build_config(
        {
            "motion": {"sensitivity": 50},
            "continuous": {"cameras": {"cam": {"retain_days": 2, "motion": {"min_duration": 3}}}},
        }
    )
    assert config.motion_for("cam").min_duration == 3
    assert config.motion_for("cam").sensitivity == 50
    assert config.motion_for("elsewhere").min_duration == 1.0
    assert config.continuous.for_camera("cam").retain_days == 2
    assert config.storage.when_full == "delete_oldest"
    with pytest.raises(ConfigError, match="sensitivity"):
        build_config({"continuous": {"cameras": {"cam": {"motion": {"sensitivity": 0}}}}})
    with pytest.raises(ConfigError, match="65507"):
        build_config({"motion": {"width": 640, "height": 480}})
    with pytest.raises(ConfigError, match="when_full"):
        build_config({"storage": {"when_full": "panic"}})


# --------------------------------------------------------------------------- motion


def test_area_mask_zones_and_mask() -> None:
    mask = area_mask(
        4,
        2,
        [MotionZone(x=0, y=0, width=0.5, height=1)],
        [MotionZone(x=0, y=0, width=0.25, height=0.5)],
    )
    assert mask == bytes([0, 1, 0, 0, 1, 1, 0, 0])
    assert area_mask(2, 2, [], []) == bytes([1, 1, 1, 1])


def test_scorer_counts_changed_pixels_in_area() -> None:
    cfg = MotionConfig(
        width=16, height=12, pixel_threshold=20, mask=[MotionZone(x=0.5, y=0, width=0.5, height=1)]
    )
    scorer = MotionScorer(cfg)
    frame = bytearray(16 * 12)
    for row in range(12):
        frame[row * 16 + 0] = 200  # left half: counted
        frame[row * 16 + 12] = 200  # masked right half: ignored
        frame[row * 16 + 1] = 20  # not above the threshold
    assert scorer.score(bytes(frame)) == pytest.approx(12 / 96)
    assert scorer.score(b"short") is None


def test_tracker_events_respect_min_duration_and_end_after() -> None:
    started: list[float] = []
    ended: list[tuple[float, float | None, float]] = []
    tracker = MotionTracker(
        0.05,
        1.0,
        2.0,
        lambda s, score: started.append(s.start),
        lambda s: ended.append((s.start, s.end, s.peak)),
    )
    t = 0.0

    def run(seconds: float, score: float) -> None:
        nonlocal t
        for _ in range(int(seconds * 5)):
            tracker.feed(t, score)
            t += 0.2

    run(2, 0.0)
    run(0.6, 0.5)  # a blip shorter than min_duration: no event
    run(3, 0.0)
    assert started == [] and tracker.current is None
    run(4, 0.2)  # motion from t=5.6
    assert started == [pytest.approx(5.6)]
    run(1, 0.0)  # a pause shorter than end_after does not end it
    run(1, 0.3)
    run(3, 0.0)
    assert ended == [(pytest.approx(5.6), pytest.approx(11.4), 0.3)]
    assert min_area_fraction(100) == pytest.approx(0.001)
    assert min_area_fraction(1) == pytest.approx(0.1)


# --------------------------------------------------------------------------- argv


def test_continuous_argv_follows_the_encoder_and_copies_h264(tmp_path: Path) -> None:
    from camera_service.media.continuous import build_continuous_args
    from camera_service.media.recordings import EncoderSettings
    from camera_service.media.source import CaptureSource

    raw = CaptureSource("cam", "testsrc2", "lavfi", fps=15)
    hw = EncoderSettings(bitrate="1M", codec="h264_v4l2m2m")
    argv = build_continuous_args(
        "ffmpeg", raw, "p.mp4", tmp_path / "l.csv", 30, hw, tmp_path / "f.jpg", 1.0, None, None
    )
    assert argv[argv.index("-c:v") + 1] == "h264_v4l2m2m"
    assert argv[argv.index("-force_key_frames") + 1] == "expr:gte(t,n_forced*30)"
    assert argv[argv.index("-segment_time") + 1] == "30"
    assert "udp://" not in " ".join(argv)
    # The progress clock: decoded frames to the null muxer in a millisecond time base.
    clock = argv.index("wrapped_avframe")
    assert argv[clock + 1 : clock + 6] == ["-enc_time_base", "1:1000", "-f", "null", "-"]
    # Listed segment times stay on the input's media time (no B-frame shift).
    assert argv.index("-avoid_negative_ts") < argv.index("segment") < argv.index("p.mp4")
    h264 = CaptureSource("cam", "rtsp://127.0.0.1/cam", "rtsp", is_h264=True)
    copied = build_continuous_args(
        "ffmpeg", h264, "p.mp4", tmp_path / "l.csv", 30, hw, tmp_path / "f.jpg", 1.0, None, None
    )
    assert copied[copied.index("-c:v") + 1] == "copy" and "-force_key_frames" not in copied
    assert copied.index("-skip_frame") < copied.index("-i")  # JPEGs from key frames only
    motion = MotionConfig()
    watched = build_continuous_args(
        "ffmpeg", h264, "p.mp4", tmp_path / "l.csv", 30, hw, tmp_path / "f.jpg", 1.0, motion, 9
    )
    assert "-skip_frame" not in watched  # motion needs every frame it samples
    assert watched[-1] == "udp://127.0.0.1:9?pkt_size=19200"
