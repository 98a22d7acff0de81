"""MediaMTX models and PathConf builders, checked against the OpenAPI document."""

from __future__ import annotations

import json
import shlex
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from camera_service.mediamtx import models
from camera_service.mediamtx.durations import format_go_duration, parse_go_duration
from camera_service.mediamtx.models import Path, PathConf, PathConfList, RecordingList
from camera_service.mediamtx.pathconf import (
    camera_path_conf,
    conf_matches,
    idle_publisher_conf,
    is_source_url,
    normalise_source_url,
    publisher_path_conf,
    recording_fields,
    recording_patch,
    restarts_path,
    source_path_conf,
)
from camera_service.mediamtx.paths import PathOwnership, path_name_for
from camera_service.mediamtx.publisher import ffmpeg_input_args, publisher_command
from camera_service.mediamtx.urls import stream_urls
from tests.support.fake_mediamtx import SpecValidator, _path_defaults, load_spec

SPEC = load_spec()
VALIDATOR = SpecValidator(SPEC)

MODEL_SCHEMAS: list[tuple[type[BaseModel], str]] = [
    (models.PathConf, "PathConf"),
    (models.PathConfList, "PathConfList"),
    (models.Path, "Path"),
    (models.PathList, "PathList"),
    (models.PathSource, "PathSource"),
    (models.PathReader, "PathReader"),
    (models.PathTrack, "PathTrack"),
    (models.Info, "Info"),
    (models.Recording, "Recording"),
    (models.RecordingList, "RecordingList"),
    (models.RecordingSegment, "RecordingSegment"),
    (models.ErrorBody, "Error"),
]


@pytest.mark.parametrize(("model", "schema"), MODEL_SCHEMAS, ids=[s for _, s in MODEL_SCHEMAS])
def test_every_field_alias_is_a_spec_property(model: type[BaseModel], schema: str) -> None:
    properties = set(SPEC["components"]["schemas"][schema]["properties"])
    aliases = {f.alias or name for name, f in model.model_fields.items()}
    assert aliases - properties == set()


def test_duration_fields_are_pathconf_string_properties() -> None:
    props = SPEC["components"]["schemas"]["PathConf"]["properties"]
    for name in models.DURATION_FIELDS:
        assert props[name]["type"] == "string"


def test_to_body_uses_aliases_and_drops_none_and_name() -> None:
    conf = PathConf(name="x", source="publisher", run_on_demand_close_after="10s", record=False)
    assert conf.to_body() == {
        "source": "publisher",
        "runOnDemandCloseAfter": "10s",
        "record": False,
    }


def test_request_enums_are_enforced() -> None:
    with pytest.raises(ValidationError):
        PathConf(record_format="mkv")
    with pytest.raises(ValidationError):
        PathConf(rtsp_transport="quic")


def test_full_server_pathconf_parses_and_keeps_unknown_fields() -> None:
    full: dict[str, Any] = {**_path_defaults(SPEC), "name": "cam", "someFutureField": 3}
    conf = PathConf.model_validate(full)
    assert conf.name == "cam"
    assert conf.source == "publisher"
    assert conf.model_extra is not None
    assert conf.model_extra["someFutureField"] == 3
    listing = PathConfList.model_validate({"itemCount": 1, "pageCount": 1, "items": [full]})
    assert listing.items[0].name == "cam"


def test_path_parses_real_shapes_and_prefers_new_fields() -> None:
    raw = {
        "name": "cam",
        "confName": "cam",
        "source": {"type": "rtspSession", "id": "1"},
        "available": True,
        "ready": False,
        "readers": [{"type": "rtspSession", "id": "a"}, {"type": "newReaderType", "id": "b"}],
        "tracks2": [{"codec": "H264", "codecProps": {"width": 320, "height": 240}}],
        "bytesSent": 5,
        "outboundBytes": 7,
        "bytesReceived": 11,
    }
    path = Path.model_validate(raw)
    assert path.is_ready is True
    assert path.reader_count == 2
    assert path.bytes_out == 7
    assert path.bytes_in == 11
    assert path.source_type == "rtspSession"
    old = Path.model_validate({"name": "o", "source": None, "ready": True, "bytesSent": 5})
    assert (old.is_ready, old.bytes_out, old.source_type) == (True, 5, None)


def test_recording_list_parses() -> None:
    data = {
        "itemCount": 1,
        "pageCount": 1,
        "items": [{"name": "cam", "segments": [{"start": "2024-01-01T00:00:00Z"}]}],
    }
    rec = RecordingList.model_validate(data)
    assert rec.items[0].segments[0].start == "2024-01-01T00:00:00Z"


# -- PathConf builders -------------------------------------------------------------------


BUILT_CONFS = {
    "lavfi": publisher_path_conf(["-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=10"]),
    "v4l2": camera_path_conf("/dev/video0"),
    "rtsp": source_path_conf("rtsp://10.0.0.5:554/stream", rtsp_transport="tcp"),
    "hls": camera_path_conf("https://example.com/live/index.m3u8"),
    "record_on": recording_patch(True, "/var/rec/%path/%Y-%m-%d_%H-%M-%S-%f"),
    "record_off": recording_patch(False),
}


@pytest.mark.parametrize("kind", sorted(BUILT_CONFS))
def test_built_confs_validate_against_spec(kind: str) -> None:
    assert VALIDATOR.schema_errors("PathConf", BUILT_CONFS[kind].to_body()) == []


def test_publisher_conf_shape() -> None:
    conf = publisher_path_conf(["-f", "lavfi", "-i", "testsrc2"], close_after=30, start_timeout=5)
    assert conf.source == "publisher"
    assert conf.run_on_demand_restart is True
    assert conf.run_on_demand_close_after == "30s"
    assert conf.run_on_demand_start_timeout == "5s"
    assert conf.source_on_demand is None


def test_publisher_command_splits_into_expected_argv() -> None:
    cmd = publisher_command(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=10"])
    argv = shlex.split(cmd)  # go-shellquote splits the same way for these inputs
    assert argv[0] == "ffmpeg"
    assert argv[argv.index("-i") + 1] == "testsrc2=size=320x240:rate=10"
    assert argv[argv.index("-c:v") + 1] == "libx264"
    assert argv[argv.index("-preset") + 1] == "ultrafast"
    assert argv[argv.index("-tune") + 1] == "zerolatency"
    assert argv[argv.index("-f", argv.index("-c:v")) + 1] == "rtsp"
    assert argv[-1] == "rtsp://127.0.0.1:$RTSP_PORT/$MTX_PATH"
    assert argv.index("-i") < argv.index("-c:v")


def test_publisher_command_pins_port_and_rejects_dollar() -> None:
    assert shlex.split(publisher_command(["-i", "x"], rtsp_port=9554))[-1] == (
        "rtsp://127.0.0.1:9554/$MTX_PATH"
    )
    with pytest.raises(ValueError, match=r"\$"):
        publisher_command(["-i", "/tmp/$HOME.mp4"])


def test_ffmpeg_input_args_per_kind() -> None:
    assert ffmpeg_input_args("testsrc2", "lavfi") == ["-re", "-f", "lavfi", "-i", "testsrc2"]
    assert ffmpeg_input_args("/dev/video2") == ["-f", "v4l2", "-i", "/dev/video2"]
    assert ffmpeg_input_args("/data/a.mp4") == ["-re", "-stream_loop", "-1", "-i", "/data/a.mp4"]


def test_camera_path_conf_dispatch() -> None:
    rtsp = camera_path_conf("rtsps://cam.local/live", close_after=5)
    assert (rtsp.source, rtsp.source_on_demand, rtsp.run_on_demand) == (
        "rtsps://cam.local/live",
        True,
        None,
    )
    assert rtsp.source_on_demand_close_after == "5s"
    local = camera_path_conf("testsrc2=rate=5", "lavfi")
    assert local.source == "publisher"
    assert local.run_on_demand is not None
    assert "-f lavfi" in local.run_on_demand
    with pytest.raises(ValueError):
        source_path_conf("/dev/video0")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (10, "10s"), (60, "1m0s"), (0.5, "500ms"), (3600, "1h0m0s"), (90.25, "1m30.25s")],
)
def test_go_duration_round_trip(seconds: float, text: str) -> None:
    assert format_go_duration(seconds) == text
    assert parse_go_duration(text) == pytest.approx(seconds)


def test_parse_go_duration_variants_and_errors() -> None:
    assert parse_go_duration("1d") == 86400
    assert parse_go_duration("1h30m") == 5400
    assert parse_go_duration("0") == 0
    assert parse_go_duration("") == 0  # MediaMTX echoes a zero duration as ""
    for bad in ("10", "ten s", "5x"):
        with pytest.raises(ValueError):
            parse_go_duration(bad)


def test_conf_matches_what_mediamtx_echoes() -> None:
    """internal/conf/duration.go: 0s is echoed as "", 24h as "1d", 1h as "1h0m0s"; before
    normalising both sides every reconcile replaced every path."""
    desired = recording_fields(
        publisher_path_conf(["-i", "x"], close_after=0), "/r/%path_%s_%f", enabled=False
    )
    echoed = {
        **_path_defaults(SPEC),
        **desired.to_body(),
        "runOnDemandCloseAfter": "",
        "runOnDemandStartTimeout": "10s",
        "recordSegmentDuration": "1d",
        "recordDeleteAfter": "",
        "name": "x",
    }
    assert conf_matches(desired, PathConf.model_validate(echoed))
    assert not conf_matches(desired, PathConf.model_validate({**echoed, "recordDeleteAfter": "1d"}))


def test_only_record_fields_change_without_a_restart() -> None:
    base = recording_fields(publisher_path_conf(["-i", "x"]), "/r/%path_%s_%f", enabled=False)
    recording = recording_fields(base, "/r/%path_%s_%f", enabled=True)
    assert not restarts_path(base, recording) and not conf_matches(recording, base)
    assert restarts_path(base, publisher_path_conf(["-i", "y"]))
    assert restarts_path(
        source_path_conf("rtsp://h/a"), source_path_conf("rtsp://h/a", on_demand=False)
    )


def test_source_urls_are_normalised_or_refused() -> None:
    """internal/conf/path.go: schemes match case-sensitively, user needs a password, and any
    http(s) source is read as HLS."""
    assert source_path_conf("RTSP://Cam.example/live").source == "rtsp://Cam.example/live"
    assert normalise_source_url("rtsp://u:p@h/x") == "rtsp://u:p@h/x"
    for bad in ("rtsp://user@h/x", "rtsp://:pw@h/x", "rtsp:///x"):
        with pytest.raises(ValueError):
            normalise_source_url(bad)
    assert is_source_url("https://h/live/index.m3u8") and is_source_url("rtsps://h/x")
    assert not is_source_url("http://h/video.mjpg")  # published through FFmpeg instead
    mjpeg = camera_path_conf("http://h/video.mjpg")
    assert mjpeg.source == "publisher" and "http://h/video.mjpg" in (mjpeg.run_on_demand or "")


def test_conf_matches_is_a_subset_check_with_duration_normalisation() -> None:
    desired = PathConf(source="publisher", run_on_demand_close_after="60s")
    server = PathConf.model_validate(
        {**_path_defaults(SPEC), "runOnDemandCloseAfter": "1m0s", "name": "x"}
    )
    assert conf_matches(desired, server)
    assert not conf_matches(PathConf(run_on_demand_close_after="61s"), server)
    assert not conf_matches(PathConf(run_on_demand="ffmpeg -i x"), server)
    assert not conf_matches(PathConf(source="publisher"), PathConf())


def test_path_names_are_camera_ids() -> None:
    assert path_name_for("cam0") == "cam0"
    assert path_name_for("camera-1_b") == "camera-1_b"
    for bad in ("", "a b", "../x", "a/b", "~regex", "all", "all_others", "a.b"):
        with pytest.raises(ValueError):
            path_name_for(bad)


async def test_ownership_persists_atomically(tmp_path: Any) -> None:
    file = tmp_path / "state" / "mediamtx_paths.json"
    owned = PathOwnership(file)
    assert owned.names() == frozenset()
    await owned.claim("cam0")
    await owned.claim("cam1")
    await owned.release("cam0", "never-claimed")
    assert json.loads(file.read_text()) == {"version": 1, "paths": ["cam1"]}
    assert file.stat().st_mode & 0o777 == 0o600
    again = PathOwnership(file)
    assert again.owns("cam1") and not again.owns("cam0")
    assert not PathOwnership().owns("cam1")  # in memory only


@pytest.mark.parametrize("content", ["{not json", '{"paths": "cam0"}', "[1, 2]"])
def test_ownership_survives_a_bad_file(tmp_path: Any, content: str) -> None:
    file = tmp_path / "mediamtx_paths.json"
    file.write_text(content)
    owned = PathOwnership(file)
    assert owned.names() == frozenset()


def test_ownership_ignores_invalid_names(tmp_path: Any) -> None:
    file = tmp_path / "mediamtx_paths.json"
    file.write_text(json.dumps({"version": 1, "paths": ["ok1", "../x", 3, "a/b"]}))
    assert PathOwnership(file).names() == frozenset({"ok1"})


def test_idle_and_recording_confs() -> None:
    args = ["-f", "lavfi", "-i", "testsrc2"]
    on_demand = publisher_path_conf(args)
    assert on_demand.run_on_init == "" and on_demand.run_on_demand
    idle = idle_publisher_conf()
    assert not conf_matches(idle, on_demand)
    pulled = source_path_conf("rtsp://h/s", on_demand=False)
    assert pulled.source_on_demand is False
    rec = recording_fields(on_demand, "/rec/%path_%Y-%m-%d_%H-%M-%S-%f", enabled=True)
    assert (rec.record, rec.record_delete_after, rec.record_format) == (True, "0s", "fmp4")
    assert rec.record_segment_duration == "24h0m0s"
    assert on_demand.record is None  # a copy
    for conf in (idle, pulled, rec):
        assert VALIDATOR.schema_errors("PathConf", conf.to_body()) == []


def test_stream_urls() -> None:
    assert stream_urls("cam_a", "h", rtsp_port=1, hls_port=2, webrtc_port=3) == {
        "rtsp": "rtsp://h:1/cam_a",
        "hls": "http://h:2/cam_a/index.m3u8",
        "webrtc": "http://h:3/cam_a",
        "whep": "http://h:3/cam_a/whep",
    }
