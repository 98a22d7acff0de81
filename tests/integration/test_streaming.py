"""MediaMTX integration over the real daemon: path provisioning, reconcile after outages,
streaming methods and their errors, health events, stream URLs in camera objects.

MediaMTX is tests/support/fake_mediamtx.py (every request body validated against the OpenAPI
document); cameras come through the discovery seam. The daemon is wired as app.py wires it
(:class:`StreamingApplication` applies that wiring while app.py does not have it yet).
Nothing sleeps to synchronise: the tests wait on the fake's state, on events and on
notifications, with timeouts.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from camera_service.app import Application
from camera_service.auth.roles import Role
from camera_service.cameras.model import Camera
from camera_service.client import CameraClient, RpcCallError
from camera_service.events import Event
from camera_service.health import ComponentStatus
from camera_service.media.source import capture_source_for
from camera_service.mediamtx.recording import (
    FIRST_SEGMENT_TIMEOUT_S,
    RecordingNotWritten,
    StreamRecordings,
)
from camera_service.mediamtx.service import MediaMTXService
from camera_service.mediamtx.snapshots import StreamSnapshots
from camera_service.rpc.methods import streams as stream_methods
from camera_service.storage.names import stamp_from_name
from tests.support.daemon import RunningDaemon, make_config
from tests.support.fake_devices import FakeEventSource, FakeProber, uvc_webcam
from tests.support.fake_mediamtx import FakeMediaMTX
from tests.support.waiting import wait_until

WAIT = 5.0
LAVFI = {
    "id": "lab0",
    "name": "Lab pattern",
    "input_format": "lavfi",
    "input": "testsrc2=size=320x240:rate=15",
}


class StreamingApplication(Application):
    """Application plus the MediaMTX wiring of app.py (a no-op once app.py has it)."""

    wired_here = False

    def _build_media(self, master_secret: bytes) -> None:
        self.wired_here = not hasattr(self, "mediamtx")
        if self.wired_here:
            self.mediamtx = MediaMTXService.from_config(self.config, self.cameras, self.bus)
        super()._build_media(master_secret)
        if self.wired_here:
            self.mediamtx.attach_recordings(self.recordings)

    def _register_methods(self) -> None:
        super()._register_methods()
        if self.wired_here:
            stream_methods.register(self.registry, self.mediamtx, self.cameras)

    def _mediamtx_health(self) -> ComponentStatus:
        return self.mediamtx.health()

    def streams_for(self, camera: Camera) -> dict[str, str]:
        return self.mediamtx.streams_for(camera)

    async def start(self) -> None:
        await super().start()
        if self.wired_here:
            await self.mediamtx.start()

    async def stop(self) -> None:
        await super().stop()
        if self.wired_here:
            await self.mediamtx.stop()


@asynccontextmanager
async def streaming_daemon(
    tmp_path: Path, overrides: dict[str, Any] | None = None, **seams: Any
) -> AsyncIterator[RunningDaemon]:
    """tests.support.daemon.running_daemon with :class:`StreamingApplication`."""
    app = StreamingApplication(make_config(tmp_path, overrides), **seams)
    await app.start()
    daemon = RunningDaemon(app)
    for role in Role:
        daemon.keys[role.label], _ = app.keys.create(f"test-{role.label}", role)
    try:
        yield daemon
    finally:
        await app.stop()


def mediamtx_overrides(fake: FakeMediaMTX, **extra: Any) -> dict[str, Any]:
    return {
        "mediamtx": {
            "enabled": True,
            "api_url": fake.url,
            "rtsp_port": fake.rtsp_port,
            "public_host": "cams.example",
            "health_interval": 0.2,
            "backoff_base": 0.05,
            "backoff_max": 0.2,
            "request_timeout": 1.0,
            "on_demand_close_after": 7,
            **extra,
        },
        "cameras": {"sources": [LAVFI], "forget_after": 300},
    }


@dataclass
class Env:
    daemon: RunningDaemon
    fake: FakeMediaMTX
    source: FakeEventSource

    @property
    def service(self) -> MediaMTXService:
        service: MediaMTXService = self.daemon.app.mediamtx  # type: ignore[attr-defined]
        return service

    def writes(self, operation: str, name: str) -> int:
        return sum(1 for r in self.fake.requests_for(operation) if r.path.endswith("/" + name))


@asynccontextmanager
async def environment(tmp_path: Path, **extra: Any) -> AsyncIterator[Env]:
    prober = FakeProber()
    source = FakeEventSource(prober)
    source.plug(*uvc_webcam(0), announce=False)
    async with FakeMediaMTX() as fake:
        fake.set_config_path("manual", source="rtsp://operator.example/cam")
        overrides = mediamtx_overrides(fake, **extra)
        async with streaming_daemon(
            tmp_path, overrides, event_source=source, prober=prober
        ) as daemon:
            env = Env(daemon, fake, source)
            await asyncio.wait_for(daemon.app.discovery.first_scan_done.wait(), WAIT)
            await fake.wait_until(lambda: {"camera0", "lab0"} <= set(fake.config_paths))
            yield env


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with environment(tmp_path) as built:
        yield built


async def next_note(client: CameraClient, method: str, **match: Any) -> dict[str, Any]:
    while True:
        note = await client.next_notification(timeout=WAIT)
        params: dict[str, Any] = note["params"]
        if note["method"] == method and all(params.get(k) == v for k, v in match.items()):
            return params


async def rpc_error(client: CameraClient, method: str, params: Any = None) -> RpcCallError:
    with pytest.raises(RpcCallError) as info:
        await client.call(method, params)
    return info.value


# --- disabled ----------------------------------------------------------------------------


async def test_disabled_streaming_answers_unsupported_and_cameras_have_no_urls(
    tmp_path: Path,
) -> None:
    overrides = {"cameras": {"sources": [LAVFI]}}  # base config: mediamtx.enabled false
    async with streaming_daemon(tmp_path, overrides) as daemon, daemon.client("admin") as client:
        for method, params in [
            ("start_streaming", {"device": "lab0"}),
            ("stop_streaming", {"device": "lab0"}),
            ("get_stream_url", {"device": "nosuchcam"}),
            ("get_stream_status", {"device": "lab0"}),
            ("get_streams", None),
        ]:
            error = await rpc_error(client, method, params)
            assert (error.code, error.data) == (-32030, {"feature": "streaming"}), method
        listing = await client.call("get_camera_list")
        assert listing["cameras"][0]["streams"] == {}
        status = await client.call("get_status")
        assert status["components"]["mediamtx"] == "STOPPED"
        assert status["component_details"]["mediamtx"]["status"] == "disabled"
        assert (await client.call("ping")) == "pong"
        assert not (tmp_path / "state" / "mediamtx_paths.json").exists()


# --- provisioning -----------------------------------------------------------------------


async def test_cameras_get_paths_named_by_id_and_urls_in_camera_objects(env: Env) -> None:
    camera0, lab0 = env.fake.config_paths["camera0"], env.fake.config_paths["lab0"]
    assert "-f v4l2" in camera0["runOnDemand"] and "/dev/video0" in camera0["runOnDemand"]
    publisher = env.daemon.app.mtx_credentials.publisher
    assert camera0["runOnDemand"].endswith(
        f"rtsp://{publisher.user}:{publisher.password}@127.0.0.1:$RTSP_PORT/$MTX_PATH"
    )
    assert (camera0["runOnDemandCloseAfter"], camera0["runOnInit"]) == ("7s", "")
    assert "testsrc2=size=320x240:rate=15" in lab0["runOnDemand"]
    assert (lab0["record"], lab0["recordDeleteAfter"]) == (False, "")  # echo of "0s"
    state = env.daemon.app.config.storage.state_dir / "mediamtx_paths.json"
    assert json.loads(state.read_text())["paths"] == ["camera0", "lab0"]
    assert env.writes("configPathsAdd", "manual") == 0

    async with env.daemon.client("viewer") as client:
        listing = await client.call("get_camera_list")
        streams = {c["device"]: c["streams"] for c in listing["cameras"]}
        tokens = {url.partition("?token=")[2] for url in streams["camera0"].values()}
        assert len(tokens) == 1
        env.daemon.app.stream_tokens.verify(tokens.pop(), "camera0", time.time())
        rtsp = f"rtsp://cams.example:{env.fake.rtsp_port}"
        assert without_token(streams["camera0"]) == {
            "rtsp": f"{rtsp}/camera0",
            "hls": "http://cams.example:8888/camera0/index.m3u8",
            "webrtc": "http://cams.example:8889/camera0",  # MediaMTX's viewer page
            "whep": "http://cams.example:8889/camera0/whep",  # what players POST to
        }
        assert without_token(streams["lab0"])["rtsp"] == f"{rtsp}/lab0"
        env.source.plug(*uvc_webcam(2, port="3"))
        note = await next_note(client, "camera_status_update", device="camera2")
        assert without_token(note["streams"])["rtsp"] == f"{rtsp}/camera2"


def without_token(streams: dict[str, str]) -> dict[str, str]:
    """Stream URLs without their ``?token=`` (stream access control is on by default)."""
    assert all("?token=cst1." in url for url in streams.values()), streams
    return {kind: url.partition("?")[0] for kind, url in streams.items()}


async def test_path_follows_connect_and_forget(env: Env) -> None:
    fake, cameras = env.fake, env.daemon.app.cameras
    capture, meta = uvc_webcam(2, port="3")
    env.source.plug(capture, meta)
    await fake.wait_until(lambda: "camera2" in fake.config_paths)
    assert "/dev/video2" in fake.config_paths["camera2"]["runOnDemand"]

    async with env.daemon.client("viewer") as client:
        env.source.unplug(capture.path, meta.path)  # DISCONNECTED: listed, path kept
        await next_note(client, "camera_status_update", device="camera2", status="DISCONNECTED")
    await fake.wait_until(lambda: fake.config_paths["camera2"]["runOnDemand"] == "")
    assert cameras.get("camera2") is not None  # listed; path kept, idle: nothing to open

    cameras.expire(now=time.monotonic() + 10_000)  # forget_after elapsed
    await fake.wait_until(lambda: "camera2" not in fake.config_paths)
    await asyncio.wait_for(env.service.wait_idle(), WAIT)
    assert not env.service.ownership.owns("camera2")
    assert "manual" in fake.config_paths


async def test_lost_path_is_restored_between_probes(env: Env) -> None:
    env.fake.config_paths.pop("lab0")  # e.g. a restart faster than the probe interval
    await env.fake.wait_until(lambda: "lab0" in env.fake.config_paths)
    assert env.writes("configPathsAdd", "lab0") == 2


# --- outage and recovery ------------------------------------------------------------------


async def test_restart_reconciles_and_publishes_health_events(env: Env) -> None:
    fake, service = env.fake, env.service
    capture, meta = uvc_webcam(2, port="3")
    env.source.plug(capture, meta)
    await fake.wait_until(lambda: "camera2" in fake.config_paths)
    async with env.daemon.client("admin") as client:
        await client.call("subscribe_events", {"topics": ["system.health"]})
        await fake.stop()
        down = await next_note(client, "system_status_update", topic="system.health")
        assert down["status"] == "degraded" and "unreachable" in down["message"]
        url = f"{env.daemon.http_url}/health/mediamtx"
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            assert resp.status == 503
            assert (await resp.json())["status"] == "unhealthy"

        # While down: camera2 is forgotten; MediaMTX restarts with its own config file,
        # which has the operator's hand-made path and a camera2 path: a name we once owned,
        # but API-made paths do not survive a restart, so this one is the operator's too.
        env.source.unplug(capture.path, meta.path)
        await next_note(client, "camera_status_update", device="camera2", status="DISCONNECTED")
        assert [c.id for c in env.daemon.app.cameras.expire(now=time.monotonic() + 1e4)] == [
            "camera2"
        ]
        manual = dict(fake.config_paths["manual"])
        fake.requests.clear()
        await fake.start(reset=True)
        fake.set_config_path("manual", **{k: v for k, v in manual.items() if k != "name"})
        fake.set_config_path("camera2", source="rtsp://stale.example/x")
        service.reconciled.clear()

        up = await next_note(client, "system_status_update", topic="system.health")
        assert up["status"] == "healthy"
        await asyncio.wait_for(service.reconciled.wait(), WAIT)
        assert sorted(fake.config_paths) == ["camera0", "camera2", "lab0", "manual"]
        assert fake.config_paths["manual"] == manual
        assert fake.config_paths["camera2"]["source"] == "rtsp://stale.example/x"
        for name in ("manual", "camera2"):
            assert all(not r.path.endswith(f"/{name}") for r in fake.requests if r.method != "GET")
        report = service.last_reconcile
        assert report is not None and report.added == ["camera0", "lab0"]
        status = await client.call("get_status")
        assert status["components"]["mediamtx"] == "RUNNING"
        mediamtx = status["component_details"]["mediamtx"]
        assert mediamtx["status"] == "healthy"
        assert mediamtx["details"]["owned_paths"] == ["camera0", "lab0"]


async def test_down_fails_fast_without_any_request(tmp_path: Path) -> None:
    async with environment(tmp_path, request_timeout=1.0) as env:
        fake = env.fake
        async with env.daemon.client("operator") as client:
            await client.call("subscribe_events", {"topics": ["system.health"]})
            fake.delay_next(10**6, 60.0)  # MediaMTX hangs: accepts, never answers
            await next_note(client, "system_status_update", status="degraded")
            before = [r for r in fake.requests if r.operation_id != "info"]
            for method, params in [
                ("start_streaming", {"device": "camera0"}),
                ("get_stream_url", {"device": "lab0"}),
                ("get_streams", None),
            ]:
                started = time.perf_counter()
                error = await rpc_error(client, method, params)
                elapsed = time.perf_counter() - started
                assert error.code == -32050 and error.data["dependency"] == "mediamtx"
                assert elapsed < 0.5, f"{method} waited {elapsed:.2f} s"
            assert [r for r in fake.requests if r.operation_id != "info"] == before
            error = await rpc_error(client, "get_stream_url", {"device": "nosuchcam"})
            assert error.code == -32010
            fake.clear_faults()
            await next_note(client, "system_status_update", status="healthy")
            assert (await client.call("get_stream_url", {"device": "lab0"}))["device"] == "lab0"


# --- streaming methods ----------------------------------------------------------------------


async def test_start_status_list_stop_streaming(env: Env) -> None:
    fake = env.fake
    fake.set_path_state("camera0", readers=2, bytes_sent=1234, bytes_received=999)
    conf_before = dict(fake.config_paths["camera0"])
    async with env.daemon.client("operator") as client:
        started = await client.call("start_streaming", {"device": "camera0"})
        assert started["status"] == "STARTED" and started["stream_name"] == "camera0"
        stream_url = started["stream_url"].partition("?")[0]
        assert stream_url == f"rtsp://cams.example:{fake.rtsp_port}/camera0"
        assert set(started["streams"]) == {"rtsp", "hls", "webrtc", "whep"}
        # Ready because the daemon holds a reader (the on-demand publisher started); the
        # path configuration is untouched, so no viewer was cut.
        assert fake.config_paths["camera0"] == conf_before
        assert len(fake.rtsp_readers["camera0"]) == 1
        again = await client.call("start_streaming", {"device": "camera0"})
        assert again["start_time"] == started["start_time"]  # idempotent

        url = await client.call("get_stream_url", {"device": "camera0"})
        assert (url["stream_status"], url["available"], url["active_consumers"]) == (
            "READY",
            True,
            3,  # two viewers and the daemon's held reader
        )
        status = await client.call("get_stream_status", {"device": "camera0"})
        assert (status["status"], status["ready"], status["readers"]) == ("ACTIVE", True, 3)
        assert status["metrics"] == {"bytes_sent": 1234, "bytes_received": 999}
        assert status["start_time"] == started["start_time"]
        lab = await client.call("get_stream_status", {"device": "lab0"})
        assert (lab["status"], lab["ready"], lab["start_time"]) == ("INACTIVE", False, None)

        streams = {s["name"]: s for s in await client.call("get_streams")}
        assert set(streams) == {"camera0", "lab0", "manual"}
        assert streams["camera0"] == {
            "name": "camera0",
            "ready": True,
            "readers": 3,
            "bytes_sent": 1234,
            "source": "rtspSession",
        }
        cam = env.daemon.app.cameras.get("camera0")
        assert cam is not None and env.service.stream_metrics(cam) == {
            "bytes_sent": 1234,
            "readers": 3,
        }

        stopped = await client.call("stop_streaming", {"device": "camera0"})
        assert (stopped["status"], stopped["stream_continues"]) == ("STOPPED", False)
        assert stopped["start_time"] == started["start_time"] and stopped["duration"] >= 0
        await fake.wait_until(lambda: not fake.rtsp_readers.get("camera0"))
        assert fake.config_paths["camera0"] == conf_before
        assert env.writes("configPathsReplace", "camera0") == 0
        error = await rpc_error(client, "stop_streaming", {"device": "camera0"})
        assert (error.code, error.data["state"]) == (-32020, "INACTIVE")


async def test_start_streaming_errors(env: Env) -> None:
    env.service.ready_timeout = 0.3
    env.fake.unpublishable.add("lab0")
    async with env.daemon.client("operator") as client:
        error = await rpc_error(client, "start_streaming", {"device": "lab0"})  # never ready
        assert error.code == -32050 and "not ready" in error.data["detail"]
        await env.fake.wait_until(lambda: env.fake.config_paths["lab0"]["runOnDemand"] != "")
        assert env.fake.config_paths["lab0"]["runOnInit"] == ""

        error = await rpc_error(client, "start_streaming", {"device": "camera9"})
        assert (error.code, error.data) == (-32010, {"resource": "camera", "id": "camera9"})
        for bad in ({"device": "../x"}, {}, {"device": "lab0", "extra": 1}):
            assert (await rpc_error(client, "start_streaming", bad)).code == -32602

        capture, meta = uvc_webcam(2, port="3")
        env.source.plug(capture, meta)
        await env.fake.wait_until(lambda: "camera2" in env.fake.config_paths)
        env.source.unplug(capture.path, meta.path)
        await next_note(client, "camera_status_update", device="camera2", status="DISCONNECTED")
        error = await rpc_error(client, "start_streaming", {"device": "camera2"})
        assert (error.code, error.data["state"]) == (-32020, "DISCONNECTED")


async def test_conflicting_hand_made_path_is_left_alone(tmp_path: Path) -> None:
    prober = FakeProber()
    source = FakeEventSource(prober)
    async with FakeMediaMTX() as fake:
        fake.set_config_path("lab0", source="rtsp://operator.example/own")
        before = dict(fake.config_paths["lab0"])
        async with streaming_daemon(
            tmp_path, mediamtx_overrides(fake), event_source=source, prober=prober
        ) as daemon:
            service: MediaMTXService = daemon.app.mediamtx  # type: ignore[attr-defined]
            await asyncio.wait_for(service.reconciled.wait(), WAIT)
            assert fake.config_paths["lab0"] == before
            assert "lab0" in service.health().details["conflicts"]
            async with daemon.client("operator") as client:
                error = await rpc_error(client, "start_streaming", {"device": "lab0"})
            assert error.code == -32050 and "not created by camera-service" in error.data["detail"]
            assert fake.config_paths["lab0"] == before


# --- single reader and recordings through MediaMTX ---------------------------------------


@dataclass
class FakeHandle:
    reader: bool
    running: bool = True


class DeviceRecording:
    """Stands in for a RecordingManager whose FFmpeg reads camera0's device."""

    def __init__(self, reader: bool) -> None:
        self.handle = FakeHandle(reader)

    def process(self, camera_id: str) -> FakeHandle | None:
        return self.handle if camera_id == "camera0" else None


async def test_device_recording_keeps_the_single_reader(env: Env) -> None:
    service, fake = env.service, env.fake
    service.attach_recordings(DeviceRecording(reader=True))  # type: ignore[arg-type]
    env.daemon.app.bus.publish(Event("recording.start", "recording_status_update", {}, "camera0"))
    await fake.wait_until(lambda: fake.config_paths["camera0"]["runOnDemand"] == "")
    assert fake.config_paths["camera0"]["runOnInit"] == ""  # idle: nothing opens the device
    async with env.daemon.client("operator") as client:
        error = await rpc_error(client, "start_streaming", {"device": "camera0"})
        assert (error.code, error.data["state"]) == (-32020, "RECORDING")

    service.attach_recordings(DeviceRecording(reader=False))  # recording reads the stream
    env.daemon.app.bus.publish(Event("recording.stop", "recording_status_update", {}, "camera0"))
    await fake.wait_until(lambda: fake.config_paths["camera0"]["runOnDemand"] != "")
    cam0, lab0 = env.daemon.app.cameras.get("camera0"), env.daemon.app.cameras.get("lab0")
    assert cam0 is not None and lab0 is not None
    recordings = env.daemon.app.recordings
    assert isinstance(recordings, StreamRecordings)
    assert recordings.route(capture_source_for(cam0)) == "stream"
    assert recordings.route(capture_source_for(lab0)) == "device"  # not exclusive
    stream = service.stream_source(capture_source_for(cam0))
    url, _, token = stream.input.partition("?token=")
    env.daemon.app.stream_tokens.verify(token, "camera0", time.time())  # the daemon reads too
    assert (url, stream.exclusive, stream.is_h264) == (
        f"rtsp://127.0.0.1:{service.config.rtsp_port}/camera0",
        False,
        True,
    )
    snapshots = env.daemon.app.snapshots
    assert isinstance(snapshots, StreamSnapshots)
    assert (await snapshots.source_for(capture_source_for(cam0))).input == stream.input


async def test_recording_in_mediamtx_survives_a_restart(tmp_path: Path) -> None:
    async with environment(tmp_path, record_with="mediamtx") as env:
        app, fake, service = env.daemon.app, env.fake, env.service
        events: list[dict[str, Any]] = []
        rec_dir = app.config.storage.recordings_dir
        recorder = StreamRecordings(service, app.supervisor, rec_dir, on_event=events.append)
        lab0 = app.cameras.get("lab0")
        assert lab0 is not None
        before = dict(fake.config_paths["lab0"])
        info = await recorder.start(capture_source_for(lab0))
        # The name announced is the file that exists: MediaMTX's segment under its UTC name.
        assert info.path.exists() and info.path.parent == rec_dir
        assert stamp_from_name(info.filename) == info.start_time.replace(microsecond=0)
        assert recorder.active("lab0") == info
        conf = fake.config_paths["lab0"]
        assert conf["record"] is True and conf["recordFormat"] == "fmp4"
        assert conf["recordPath"] == f"{rec_dir.resolve()}/.mediamtx/%path_%s_%f"
        changed = {k for k in conf if conf[k] != before[k]}
        assert changed == {"record"}  # applied in place: no path restart
        assert [e["status"] for e in events] == ["STARTED"]

        await fake.stop()
        await fake.start(reset=True)  # the API-made path is gone
        await fake.wait_until(lambda: fake.config_paths.get("lab0", {}).get("record") is True)
        await fake.wait_until(lambda: len(fake.segment_files) == 2, timeout=10)
        rec = recorder._mtx["lab0"]
        await wait_until(lambda: len(rec.files) == 2, what="the new segment is tracked")

        result = await recorder.stop("lab0")
        sizes = sum(p.stat().st_size for p in rec.files)
        assert (result.status, result.filename, result.file_size) == (
            "STOPPED",
            info.filename,
            sizes,
        )
        assert fake.config_paths["lab0"]["record"] is False
        assert fake.config_paths["lab0"]["runOnDemand"] == before["runOnDemand"]
        assert not list((rec_dir / ".mediamtx").iterdir())  # staging names dropped
        assert all(p.exists() for p in rec.files)
        assert recorder.active("lab0") is None and [e["status"] for e in events][-1] == "STOPPED"
        await recorder.stop_all()


async def test_recording_mediamtx_does_not_write_fails_fast(tmp_path: Path) -> None:
    async with environment(tmp_path, record_with="mediamtx") as env:
        app, service = env.daemon.app, env.service
        rec_dir = app.config.storage.recordings_dir
        rec_dir.mkdir(parents=True, exist_ok=True)
        (rec_dir / ".mediamtx").write_text("not a directory")  # MediaMTX cannot create files
        recorder = StreamRecordings(service, app.supervisor, rec_dir)
        lab0 = app.cameras.get("lab0")
        assert lab0 is not None
        started = time.perf_counter()
        with pytest.raises(RecordingNotWritten, match="wrote no recording"):
            await recorder.start(capture_source_for(lab0))
        assert time.perf_counter() - started < FIRST_SEGMENT_TIMEOUT_S + 3
        assert env.fake.record_errors and recorder.active("lab0") is None
        assert env.fake.config_paths["lab0"]["record"] is False
        assert not service.holders.held("lab0")


async def test_streaming_and_recording_transitions_never_cut_a_reader(tmp_path: Path) -> None:
    """Every API call that changes a path's mode keeps existing readers connected; the fake
    closes readers on a path restart as MediaMTX does (the old runOnDemand ↔ runOnInit
    switch failed this)."""
    async with environment(tmp_path, record_with="mediamtx") as env:
        app, fake, service = env.daemon.app, env.fake, env.service
        recorder = StreamRecordings(service, app.supervisor, app.config.storage.recordings_dir)
        lab0 = app.cameras.get("lab0")
        assert lab0 is not None
        reader_r, reader_w = await asyncio.open_connection("127.0.0.1", fake.rtsp_port)
        reader_w.write(f"OPTIONS rtsp://127.0.0.1:{fake.rtsp_port}/lab0 RTSP/1.0\r\n\r\n".encode())
        await reader_w.drain()
        await fake.wait_until(lambda: bool(fake.rtsp_readers.get("lab0")))
        viewer = next(iter(fake.rtsp_readers["lab0"]))
        async with env.daemon.client("operator") as client:
            await client.call("start_streaming", {"device": "lab0"})
            await recorder.start(capture_source_for(lab0))
            stop = await client.call("stop_streaming", {"device": "lab0"})
            assert stop["stream_continues"] is True  # the recording reads it
            await recorder.stop("lab0")
            await recorder.start(capture_source_for(lab0))  # recording while not streaming
            await recorder.stop("lab0")
        await asyncio.wait_for(service.wait_idle(), WAIT)
        assert viewer in fake.rtsp_readers.get("lab0", set())
        assert not reader_r.at_eof()
        reader_w.close()
        await recorder.stop_all()


async def test_start_streaming_does_not_report_the_replaced_path_ready(env: Env) -> None:
    """MediaMTX applies a write after its 200: right after a replace that restarts the path,
    the old path still answers ready. start_streaming must wait for the new one."""
    fake = env.fake
    fake.apply_delay = 0.3
    ours = fake.config_paths["lab0"]["runOnDemand"]
    fake.config_paths["lab0"]["runOnDemand"] = "ffmpeg -i stale"  # an outdated publisher
    old = fake.set_path_state("lab0", ready=True)
    old_ready = old.ready_time
    async with env.daemon.client("operator") as client:
        await client.call("start_streaming", {"device": "lab0"})
    assert fake.config_paths["lab0"]["runOnDemand"] == ours
    state = fake.path_states.get("lab0")
    assert state is not None and state.ready and state.ready_time != old_ready
    assert env.writes("configPathsReplace", "lab0") == 1
