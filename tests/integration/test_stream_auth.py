"""Stream access control over HTTP: POST /mediamtx/auth of a running daemon, called the way
MediaMTX v1.20.1 calls it (tests/support/fake_mediamtx_auth.py), with the fake MediaMTX as the
daemon's MediaMTX (its API requests authenticated through the same hook).

The whole decision table (tests/support/stream_auth_cases.py) runs through the endpoint;
then the parts around it: callers other than MediaMTX, failed-auth limit, audit lines,
tokens from get_stream_url, kicks on revocation, the check of MediaMTX's settings.
"""

from __future__ import annotations

import json
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from camera_service.auth.roles import Role
from camera_service.logging import AUDIT_LOGGER
from camera_service.mediamtx.client import MediaMTXClient
from tests.support.daemon import RunningDaemon, running_daemon
from tests.support.fake_mediamtx import FakeMediaMTX
from tests.support.fake_mediamtx_auth import Credentials, MediaMTXAuthCaller
from tests.support.stream_auth_cases import cases, make_world

WAIT = 5.0
CAMERAS = [
    {"id": "camera0", "name": "Zero", "input_format": "lavfi", "input": "testsrc2=size=160x120"},
    {"id": "camera1", "name": "One", "input_format": "lavfi", "input": "testsrc2=size=160x120"},
]


def overrides(fake: FakeMediaMTX, **auth: Any) -> dict[str, Any]:
    return {
        "mediamtx": {
            "enabled": True,
            "api_url": fake.url,
            "health_interval": 0.2,
            "backoff_base": 0.05,
            "backoff_max": 0.2,
            "request_timeout": 1.0,
        },
        "cameras": {"sources": CAMERAS},
        "auth": auth,
    }


class Env:
    def __init__(self, daemon: RunningDaemon, fake: FakeMediaMTX) -> None:
        self.daemon = daemon
        self.fake = fake
        self.hook = MediaMTXAuthCaller(f"{daemon.http_url}/mediamtx/auth")
        self.http = aiohttp.ClientSession()

    async def allowed(self, **request: Any) -> bool:
        return await self.hook.authenticate(self.http, **request)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with FakeMediaMTX() as fake, running_daemon(
        tmp_path, overrides(fake, failed_auth_limit=10000)
    ) as daemon:  # fmt: skip
        await fake.wait_until(lambda: {"camera0", "camera1"} <= set(fake.config_paths))
        env = Env(daemon, fake)
        try:
            yield env
        finally:
            await env.http.close()


async def test_decision_table_through_the_endpoint(env: Env, tmp_path: Path) -> None:
    app = env.daemon.app
    world = make_world(tmp_path, app.jwt, app.keys, app.stream_tokens, app.mtx_credentials)
    wrong = []
    table = list(cases(world, env.hook))
    for case in table:
        async with env.http.post(env.hook.auth_http_address, json=case.request) as resp:
            if (200 <= resp.status <= 299) != case.allowed:
                wrong.append((case.id, resp.status, await resp.text()))
    assert wrong == []
    assert len(table) > 300


async def test_daemon_api_requests_pass_the_hook_and_others_do_not(env: Env) -> None:
    env.fake.auth = env.hook
    problems = await env.daemon.app.mediamtx.check_auth_settings()  # one API request
    assert problems is not None
    sent = env.hook.bodies[-1]
    assert (sent["action"], sent["user"]) == ("api", "camera-service")
    async with MediaMTXClient(env.fake.url) as anonymous:
        with pytest.raises(Exception, match="401"):
            await anonymous.info()
    async with MediaMTXClient(env.fake.url, auth=("camera-service", "guess")) as guessing:
        with pytest.raises(Exception, match="401"):
            await guessing.info()


async def test_settings_check_reports_what_defeats_access_control(env: Env) -> None:
    service = env.daemon.app.mediamtx
    env.fake.global_conf.update(authMethod="internal", authHTTPExclude=[{"action": "read"}])
    problems = await service.check_auth_settings()
    assert problems is not None and len(problems) == 3
    assert "authMethod" in problems[0] and "read" in problems[2]
    health = service.health().details["stream_auth"]
    assert health == {"checked": True, "problems": problems}
    env.fake.global_conf.update(
        authMethod="http",
        authHTTPAddress=f"{env.daemon.http_url}/mediamtx/auth",
        authHTTPExclude=[],
    )
    assert await service.check_auth_settings() == []


async def test_stream_url_token_opens_its_camera_only(env: Env) -> None:
    async with env.daemon.client("viewer") as client:
        result = await client.call("get_stream_url", {"device": "camera0"})
    hls_query = result["streams"]["hls"].partition("?")[2]
    rtsp_query = result["streams"]["rtsp"].partition("?")[2]
    assert await env.allowed(action="read", path="camera0", protocol="hls", query=hls_query)
    assert await env.allowed(action="read", path="camera0", protocol="rtsp", query=rtsp_query)
    assert await env.allowed(action="read", path="camera0", protocol="webrtc", query=hls_query)
    assert not await env.allowed(action="read", path="camera1", protocol="hls", query=hls_query)
    assert not await env.allowed(action="publish", path="camera0", protocol="rtsp",
                                 query=rtsp_query)  # fmt: skip


async def test_revoking_a_key_kicks_its_sessions(env: Env) -> None:
    app = env.daemon.app
    key, record = app.keys.create("kiosk", Role.VIEWER)
    session_id = uuid.uuid4()
    assert await env.allowed(
        action="read", path="camera0", protocol="rtsp", creds=Credentials("kiosk", key),
        session_id=session_id,
    )  # fmt: skip
    env.fake.add_session("rtspsessions", str(session_id))
    other = uuid.uuid4()
    viewer = env.daemon.keys["viewer"]
    assert await env.allowed(
        action="read", path="camera0", protocol="hls", query=f"token={viewer}", session_id=other
    )
    env.fake.add_session("hlssessions", str(other))
    app.keys.revoke(record.id)
    await env.fake.wait_until(lambda: env.fake.kicked == [("rtspsessions", str(session_id))], WAIT)
    assert not await env.allowed(
        action="read", path="camera0", protocol="rtsp", creds=Credentials("kiosk", key)
    )
    assert str(other) in env.fake.sessions["hlssessions"]


async def test_denials_are_audited_and_counted(tmp_path: Path, caplog: Any) -> None:
    async with FakeMediaMTX() as fake, running_daemon(
        tmp_path, overrides(fake, failed_auth_limit=3)
    ) as daemon:  # fmt: skip
        hook = MediaMTXAuthCaller(f"{daemon.http_url}/mediamtx/auth")
        viewer = daemon.keys["viewer"]
        good = {"action": "read", "path": "camera0", "protocol": "rtsp", "ip": "198.51.100.4"}
        async with aiohttp.ClientSession() as http:
            caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
            for _ in range(5):  # anonymous: the RTSP/HTTP challenge round, never counted
                assert not await hook.authenticate(http, **good)
            assert await hook.authenticate(http, **good, creds=Credentials("v", viewer))
            for _ in range(3):
                assert not await hook.authenticate(http, **good, creds=Credentials("v", "bad"))
            assert not await hook.authenticate(http, **good, creds=Credentials("v", viewer))
            other_ip = {**good, "ip": "198.51.100.5"}
            assert await hook.authenticate(http, **other_ip, creds=Credentials("v", viewer))
            publisher = daemon.app.mtx_credentials.publisher
            pub = Credentials(publisher.user, publisher.password)
            assert await hook.authenticate(
                http, action="publish", path="camera0", protocol="rtsp", creds=pub
            )
    denials = [r for r in caplog.records if r.getMessage() == "stream access denied"]
    assert len(denials) == 5 + 3 + 1
    bad = [r for r in denials if getattr(r, "counted", False)]
    assert len(bad) == 3
    line = vars(bad[0])
    assert {k: line[k] for k in ("who", "ip", "path", "action", "protocol")} == {
        "who": "v", "ip": "198.51.100.4", "path": "camera0", "action": "read", "protocol": "rtsp",
    }  # fmt: skip
    assert "bad" not in json.dumps({k: str(v) for k, v in line.items()})
    limited = denials[-1]
    assert "too many" in limited.reason


def local_address() -> str | None:
    """A non-loopback address of this machine (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = str(sock.getsockname()[0])
    return None if address.startswith("127.") or address == "0.0.0.0" else address


async def test_only_mediamtx_may_call_the_endpoint(tmp_path: Path) -> None:
    address = local_address()
    if address is None:
        pytest.skip("skipped: this machine has no non-loopback IPv4 address")
    async with FakeMediaMTX() as fake:
        config = overrides(fake)
        config["http"] = {"host": address, "port": 0}
        async with running_daemon(tmp_path, config) as daemon:
            url = f"http://{address}:{daemon.app.http.port}/mediamtx/auth"
            publisher = daemon.app.mtx_credentials.publisher
            body = MediaMTXAuthCaller(url).body(
                action="publish", path="camera0", protocol="rtsp",
                creds=Credentials(publisher.user, publisher.password),
            )  # fmt: skip
            async with aiohttp.ClientSession() as http:
                async with http.post(url, json=body) as resp:
                    assert resp.status == 403
                async with http.post(url, data=b"x" * (70 * 1024)) as resp:
                    assert resp.status == 403


async def test_bad_bodies_get_400_and_oversized_413(env: Env) -> None:
    url = env.hook.auth_http_address
    async with env.http.post(url, data=b"{not json") as resp:
        assert (resp.status, await resp.text()) == (400, "body is not JSON\n")
    async with env.http.post(url, json={"action": "read", "user": 3}) as resp:
        assert (resp.status, await resp.text()) == (400, "user must be a string\n")
    async with env.http.post(url, data=b"x" * (70 * 1024)) as resp:
        assert resp.status == 413


async def test_stream_auth_off_gives_plain_urls_and_no_endpoint(tmp_path: Path) -> None:
    async with FakeMediaMTX() as fake:
        config = overrides(fake)
        config["mediamtx"]["stream_auth"] = False
        async with running_daemon(tmp_path, config) as daemon:
            await fake.wait_until(lambda: "camera0" in fake.config_paths)
            assert "@127.0.0.1" not in fake.config_paths["camera0"]["runOnDemand"]
            async with daemon.client("viewer") as client:
                result = await client.call("get_stream_url", {"device": "camera0"})
            assert "token" not in json.dumps(result["streams"])
            url = f"{daemon.http_url}/mediamtx/auth"
            async with aiohttp.ClientSession() as http, http.post(url, json={}) as resp:
                assert resp.status in (404, 405)


async def test_tokens_expire_with_the_configured_ttl(env: Env) -> None:
    tokens = env.daemon.app.stream_tokens
    now = time.time()
    token = tokens.issue("camera0", now - tokens.ttl_s - 1)
    assert not await env.allowed(action="read", path="camera0", protocol="hls",
                                 query=f"token={token}")  # fmt: skip
