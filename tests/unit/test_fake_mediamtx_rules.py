"""The fake MediaMTX refuses what the real one refuses (rules of internal/conf/path.go) and
echoes what it echoes, so the fake-based suite fails where MediaMTX would."""

from __future__ import annotations

from camera_service.mediamtx.pathconf import camera_path_conf, recording_fields
from camera_service.mediamtx.segments import record_path
from tests.support.fake_mediamtx import _path_defaults, load_spec
from tests.support.fake_mediamtx_rules import (
    conf_error,
    echo_conf,
    echo_duration,
    path_name_error,
    restarts,
)

DEFAULTS = _path_defaults(load_spec())


def full(**fields: object) -> dict[str, object]:
    return {**DEFAULTS, **fields}


def test_durations_are_echoed_like_mediamtx() -> None:
    assert [echo_duration(v) for v in ("0s", "24h0m0s", "1h", "90s", "25h")] == [
        "",
        "1d",
        "1h0m0s",
        "1m30s",
        "1d1h0m0s",
    ]


def test_our_path_configurations_pass_even_with_playback_on() -> None:
    conf = recording_fields(
        camera_path_conf("testsrc2", "lavfi"), record_path("/rec"), enabled=True
    ).to_body()
    assert conf_error(full(**conf), playback=True) is None


def test_record_rules() -> None:
    assert "must contain %path" in (conf_error(full(recordPath="/r/%Y-%m-%d_%H-%M-%S")) or "")
    assert "either %s" in (conf_error(full(recordPath="/r/%path_%Y")) or "")
    old_style = full(recordPath="/r/%path_%Y-%m-%d_%H-%M-%S")
    assert conf_error(old_style) is None
    assert "must contain %f" in (conf_error(old_style, playback=True) or "")
    assert "1 day" in (conf_error(full(recordSegmentDuration="25h")) or "")
    short = full(recordSegmentDuration="1h", recordDeleteAfter="30m")
    assert "cannot be lower" in (conf_error(short) or "")
    assert conf_error(full(recordSegmentDuration="1h", recordDeleteAfter="0s")) is None


def test_source_rules() -> None:
    assert "invalid source" in (conf_error(full(source="RTSP://cam/live")) or "")
    assert "must be both provided" in (conf_error(full(source="rtsp://user@cam/live")) or "")
    assert conf_error(full(source="rtsp://u:p@cam/live", sourceOnDemand=True)) is None
    assert "useless" in (conf_error(full(sourceOnDemand=True)) or "")
    assert "only when source is 'publisher'" in (
        conf_error(full(source="rtsp://cam/x", runOnDemand="ffmpeg")) or ""
    )


def test_path_names_and_restarts() -> None:
    assert path_name_error("cam0") is None and path_name_error("~^re$") is None
    for bad in ("", "/a", "a/", "a b", "a/../b"):
        assert path_name_error(bad) is not None, bad
    base = echo_conf(full(runOnDemand="ffmpeg -i x", record=False))
    assert not restarts(base, {**base, "record": True, "recordPath": "/r/%path_%s_%f"})
    assert restarts(base, {**base, "runOnDemand": "", "runOnInit": "ffmpeg -i x"})
    assert not restarts(base, {**base, "runOnDemandCloseAfter": "10s"})  # echo of the same
