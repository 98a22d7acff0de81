"""Every background loop of the daemon is supervised: a crash is logged and the loop restarted
(issue 10, item 9). Each test makes one iteration of one loop raise, then waits for the loop to
run again. Also: the API key store keeps its last good state while the file is unreadable."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from camera_service import supervise
from camera_service.app import Application
from camera_service.auth.api_keys import ApiKeyStore
from camera_service.auth.roles import Role
from camera_service.client import CameraClient, RpcCallError
from camera_service.events import Event
from camera_service.media.source import capture_source_for
from camera_service.mediamtx import recording as mtx_recording
from camera_service.mediamtx.recording import StreamRecordings
from camera_service.wiring import loops
from tests.integration.test_streaming import environment
from tests.support.daemon import RunningDaemon, make_config, running_daemon
from tests.support.fake_devices import FakeEventSource, FakeProber, uvc_webcam
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(60)
WAIT = 10.0


class FailOnce:
    """Wraps a loop's per-iteration call: the first call after patching raises, later ones
    run the real thing; `again` is set once the loop called it after the crash."""

    def __init__(self, real: Callable[..., Any]) -> None:
        self.real = real
        self.calls = 0
        self.again = asyncio.Event()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("injected fault")
        self.again.set()
        return self.real(*args, **kwargs)


def inject(monkeypatch: pytest.MonkeyPatch, owner: object, attribute: str) -> FailOnce:
    fault = FailOnce(getattr(owner, attribute))
    monkeypatch.setattr(owner, attribute, fault)
    return fault


async def restarted(fault: FailOnce, caplog: pytest.LogCaptureFixture, loop: str) -> None:
    await asyncio.wait_for(fault.again.wait(), WAIT)
    crashes = [
        r
        for r in caplog.records
        if r.getMessage().startswith(f"background loop {loop} crashed") and r.exc_info
    ]
    assert crashes, f"the crash of {loop} was not logged with its traceback"
    assert supervise.crashes[loop] >= 1


@pytest.fixture(autouse=True)
def quick_restarts(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(supervise, "RESTART_DELAY_S", 0.01)
    caplog.set_level(logging.ERROR, logger="camera_service.supervise")


@asynccontextmanager
async def app_with_cameras(
    tmp_path: Path, before_start: Callable[[Application], None]
) -> AsyncIterator[Application]:
    prober = FakeProber()
    source = FakeEventSource(prober)
    source.plug(*uvc_webcam(0), announce=False)
    app = Application(make_config(tmp_path), event_source=source, prober=prober)
    before_start(app)
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


# --- loops of the composition root ---------------------------------------------------------


async def test_session_sweep_is_restarted(
    daemon: RunningDaemon, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(loops, "SESSION_SWEEP_INTERVAL_S", 0.02)
    fault = inject(monkeypatch, daemon.app.keys, "refresh_if_changed")
    await restarted(fault, caplog, "session-sweep")


async def test_watchdog_is_restarted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import socket

    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "100000")
    try:
        async with running_daemon(tmp_path / "d") as daemon:
            fault = inject(monkeypatch, daemon.app.notifier, "watchdog")
            await restarted(fault, caplog, "watchdog")
    finally:
        sock.close()


async def test_storage_guard_is_restarted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def quick(app: Application) -> None:
        app.storage_guard.interval = 0.02
        inject(monkeypatch, app.storage_guard, "check_once")

    async with app_with_cameras(tmp_path, quick) as app:
        fault = app.storage_guard.check_once
        assert isinstance(fault, FailOnce)
        await restarted(fault, caplog, "storage-guard")


async def test_retention_loop_survives_a_failing_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    async with running_daemon(tmp_path, {"retention": {"interval": 0.02}}) as daemon:
        fault = inject(monkeypatch, daemon.app.retention, "run_once")
        await asyncio.wait_for(fault.again.wait(), WAIT)
    assert any(r.exc_info and "retention" in r.getMessage() for r in caplog.records)


# --- camera discovery ---------------------------------------------------------------------


async def test_camera_discovery_is_restarted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    faults: list[FailOnce] = []

    def crash_first_scan(app: Application) -> None:
        faults.append(inject(monkeypatch, app.discovery, "_safe_rescan"))

    async with app_with_cameras(tmp_path, crash_first_scan) as app:
        await restarted(faults[0], caplog, "camera-discovery")
        await wait_until(lambda: app.cameras.get("camera0") is not None, WAIT, "camera0 found")


async def test_camera_error_recheck_is_restarted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    faults: list[FailOnce] = []

    def quick(app: Application) -> None:
        app.discovery.error_recheck_interval = 0.02
        faults.append(inject(monkeypatch, app.discovery, "_error_cameras"))

    async with app_with_cameras(tmp_path, quick):
        await restarted(faults[0], caplog, "camera-error-recheck")


# --- MediaMTX -----------------------------------------------------------------------------


async def test_mediamtx_monitor_is_restarted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with environment(tmp_path) as env:
        fault = inject(monkeypatch, env.service.monitor, "probe_once")
        env.service.monitor.trigger()
        await restarted(fault, caplog, "mediamtx-monitor")


async def test_mediamtx_maintain_is_restarted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with environment(tmp_path) as env:
        fault = inject(monkeypatch, env.service, "refresh_paths")
        await restarted(fault, caplog, "mediamtx-maintain")


async def test_mediamtx_segment_watcher_is_restarted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(mtx_recording, "SEGMENT_SCAN_S", 0.02)
    async with environment(tmp_path, record_with="mediamtx") as env:
        app = env.daemon.app
        recorder = StreamRecordings(env.service, app.supervisor, app.config.storage.recordings_dir)
        lab0 = app.cameras.get("lab0")
        assert lab0 is not None
        await recorder.start(capture_source_for(lab0))
        fault = inject(monkeypatch, recorder, "_scan_segments")  # the watcher's next scan
        try:
            await restarted(fault, caplog, "mtx-rec-lab0")
        finally:
            await recorder.stop_all()


# --- the API key store while api_keys.json is briefly unreadable ----------------------------


async def test_key_store_keeps_last_good_state_while_the_file_is_unreadable(
    daemon: RunningDaemon, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(loops, "SESSION_SWEEP_INTERVAL_S", 0.02)
    key_file = daemon.app.config.api_keys_file
    good = key_file.read_bytes()
    caplog.set_level(logging.ERROR, logger="camera_service.auth.api_keys")
    async with CameraClient(daemon.ws_url) as viewer, CameraClient(daemon.ws_url) as other:
        await viewer.authenticate(daemon.keys["viewer"])
        await other.authenticate(daemon.keys["operator"])
        await viewer.call("subscribe_events", {"topics": ["system.*"]})
        key_file.write_bytes(good[: len(good) // 2])  # an edit caught half-way
        for _ in range(3):
            assert (await viewer.call("get_camera_list"))["total"] == 0
            await other.call("get_camera_list", {"auth_token": daemon.keys["operator"]})
        errors = [r for r in caplog.records if str(key_file) in r.getMessage()]
        assert len(errors) == 1, "logged once per version of the file, naming it"
        # The edit completes: the viewer key is revoked by another process.
        key_file.write_bytes(good)
        viewer_id = daemon.keys["viewer"].split("_")[1]
        ApiKeyStore(key_file).revoke(viewer_id)
        with pytest.raises(RpcCallError) as info:
            await viewer.call("get_camera_list")
        assert info.value.code == -32001
        # ...and the sweep, still alive, stopped its notifications.
        viewer_session = _session_of(daemon, Role.VIEWER)
        await wait_until(lambda: not daemon.app.bus.topics_of(viewer_session), WAIT, "dropped")
        daemon.app.bus.publish(Event("system.health", "system_status_update", {"s": 1}))
        assert (await other.call("ping")) == "pong"


def _session_of(daemon: RunningDaemon, role: Role) -> str:
    for session in daemon.app.ws.sessions.values():
        if session.identity is not None and session.identity.role is role:
            return session.subscriber_id
    raise AssertionError(f"no {role.label} session")


async def test_mqtt_bridge_loop_is_restarted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.support.mosquitto import broker

    caplog.set_level(logging.ERROR)
    async with broker(tmp_path) as mosquitto:
        mqtt = {"enabled": True, "url": mosquitto.url, "node_id": "n", "backoff_base": 0.05}
        async with running_daemon(tmp_path / "d", {"mqtt": mqtt}) as daemon:
            bridge = daemon.app.mqtt
            assert bridge is not None
            await asyncio.wait_for(bridge.connected.wait(), WAIT)
            fault = inject(monkeypatch, bridge, "_session")
            mosquitto.stop()  # the session ends; the loop reconnects through the fault
            await wait_until(lambda: not bridge.connected.is_set(), WAIT, "disconnected")
            await mosquitto.start()
            await asyncio.wait_for(fault.again.wait(), WAIT)
            await asyncio.wait_for(bridge.connected.wait(), WAIT)
    assert any(r.exc_info and "MQTT" in r.getMessage() for r in caplog.records)


async def test_continuous_recorder_loop_is_restarted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from camera_service.storage.modes import ModeSettings

    async with running_daemon(tmp_path) as daemon:
        nvr = daemon.app.nvr
        # A camera that is not there: the recorder's loop waits for it to come back.
        await nvr.set_mode("ghost", ModeSettings("continuous", 2, 1.0, 1.0))
        recorder = nvr.recorder("ghost")
        assert recorder is not None
        fault = inject(monkeypatch, recorder, "_source_for")
        recorder.wake()
        await restarted(fault, caplog, "continuous-ghost")
        await nvr.set_mode("ghost", ModeSettings("off", 2, 1.0, 1.0))


async def test_nvr_housekeeping_loop_survives_a_failing_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from camera_service.media import nvr as nvr_module

    caplog.set_level(logging.ERROR)
    monkeypatch.setattr(nvr_module, "HOUSEKEEPING_S", 0.02)
    async with running_daemon(tmp_path) as daemon:
        fault = inject(monkeypatch, daemon.app.nvr, "housekeep_once")
        await asyncio.wait_for(fault.again.wait(), WAIT)
    assert any(r.exc_info and "housekeeping" in r.getMessage() for r in caplog.records)
