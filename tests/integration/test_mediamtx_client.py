"""MediaMTXClient against the spec-validating fake MediaMTX API server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from camera_service.mediamtx import client as client_module
from camera_service.mediamtx.client import (
    MediaMTXClient,
    MediaMTXError,
    MediaMTXNotFound,
    MediaMTXRequestError,
    MediaMTXServerError,
    MediaMTXUnavailable,
)
from camera_service.mediamtx.http_client import HTTPClient
from camera_service.mediamtx.models import PathConf
from camera_service.mediamtx.pathconf import (
    camera_path_conf,
    publisher_path_conf,
    recording_patch,
    source_path_conf,
)
from tests.support.fake_mediamtx import FakeMediaMTX


@pytest.fixture
async def fake() -> AsyncIterator[FakeMediaMTX]:
    async with FakeMediaMTX() as server:
        yield server


@pytest.fixture
async def client(fake: FakeMediaMTX) -> AsyncIterator[MediaMTXClient]:
    async with MediaMTXClient(fake.url, timeout=2.0) as mtx:
        yield mtx


# -- every call that sends a body, validated by the fake server --------------------------

BodyCall = Callable[[MediaMTXClient, str, PathConf], Awaitable[None]]

BODY_CALLS: dict[str, BodyCall] = {
    "configPathsAdd": lambda c, n, p: c.add_config_path(n, p),
    "configPathsPatch": lambda c, n, p: c.patch_config_path(n, p),
    "configPathsReplace": lambda c, n, p: c.replace_config_path(n, p),
}

EVERY_TYPED_FIELD = PathConf(
    source="rtsp://10.0.0.1:554/s",
    source_on_demand=True,
    source_on_demand_start_timeout="10s",
    source_on_demand_close_after="1m0s",
    rtsp_transport="tcp",
    max_readers=4,
    run_on_init="",
    run_on_init_restart=False,
    run_on_demand="",
    run_on_demand_restart=False,
    run_on_demand_start_timeout="10s",
    run_on_demand_close_after="10s",
    record=True,
    record_path="/rec/%path/%Y-%m-%d_%H-%M-%S-%f",
    record_format="mpegts",
    record_part_duration="1s",
    record_segment_duration="1h0m0s",
    record_delete_after="24h0m0s",
)

BODIES: dict[str, PathConf] = {
    "lavfi_publisher": camera_path_conf("testsrc2=size=320x240:rate=10", "lavfi"),
    "v4l2_publisher": publisher_path_conf(["-f", "v4l2", "-i", "/dev/video0"], close_after=90),
    "rtsp_source": source_path_conf("rtsp://10.0.0.1/s", rtsp_transport="tcp"),
    "hls_source": source_path_conf("http://10.0.0.1/live/index.m3u8", on_demand=False),
    "record_on": recording_patch(True, "/rec/%path/%Y-%m-%d_%H-%M-%S-%f", "fmp4"),
    "record_off": recording_patch(False),
    "every_typed_field": EVERY_TYPED_FIELD,
    "empty": PathConf(),
}


def test_body_table_covers_every_body_operation_the_fake_serves() -> None:
    spec = FakeMediaMTX().spec
    with_body = {
        op["operationId"]
        for ops in spec["paths"].values()
        for op in ops.values()
        if op.get("operationId") in FakeMediaMTX.OPERATIONS and "requestBody" in op
    }
    assert with_body == set(BODY_CALLS)


@pytest.mark.parametrize("body_name", sorted(BODIES))
@pytest.mark.parametrize("operation", sorted(BODY_CALLS))
async def test_body_is_accepted_by_spec_validator(
    fake: FakeMediaMTX, client: MediaMTXClient, operation: str, body_name: str
) -> None:
    name = "camsvc_t"
    if operation != "configPathsAdd":
        fake.set_config_path(name)
    await BODY_CALLS[operation](client, name, BODIES[body_name])
    [sent] = fake.requests_for(operation)
    assert sent.status == 200
    assert sent.body == BODIES[body_name].to_body()
    assert fake.validator.schema_errors("PathConf", sent.body) == []


# -- the fake really validates -----------------------------------------------------------


async def _raw_post(url: str, data: str) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=data, headers={"Content-Type": "application/json"}) as resp,
    ):
        return resp.status, await resp.json()


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ('{"record": "yes"}', "record"),
        ('{"recordFormat": "mkv"}', "mkv"),
        ('{"runOnDemandRestart": 1}', "runOnDemandRestart"),
        ('{"notAField": true}', "notAField"),
        ('["source"]', "object"),
        ("{not json", "invalid JSON"),
    ],
)
async def test_fake_rejects_invalid_bodies(fake: FakeMediaMTX, body: str, needle: str) -> None:
    status, payload = await _raw_post(f"{fake.url}/v3/config/paths/add/camsvc_x", body)
    assert status == 400
    assert payload["status"] == "error"
    assert needle in str(payload["error"])
    assert "camsvc_x" not in fake.config_paths


async def test_spec_alone_allows_unknown_fields() -> None:
    """The OpenAPI schemas do not forbid extra properties; only the MediaMTX mode does."""
    async with FakeMediaMTX(forbid_unknown_fields=False) as lenient:
        status, _ = await _raw_post(f"{lenient.url}/v3/config/paths/add/a", '{"notAField": 1}')
        assert status == 200
        status, _ = await _raw_post(f"{lenient.url}/v3/config/paths/add/b", '{"record": "y"}')
        assert status == 400


async def test_client_surfaces_validation_error_message(client: MediaMTXClient) -> None:
    bad = PathConf.model_validate({"source": "publisher", "notAField": 1})
    with pytest.raises(MediaMTXRequestError) as info:
        await client.add_config_path("camsvc_bad", bad)
    assert info.value.status == 400
    assert "notAField" in info.value.message


# -- reads -------------------------------------------------------------------------------


async def test_info(client: MediaMTXClient) -> None:
    info = await client.info()
    assert info.version == "v0.0.0-fake"
    assert info.started


async def test_config_path_crud(fake: FakeMediaMTX, client: MediaMTXClient) -> None:
    conf = camera_path_conf("testsrc2", "lavfi", close_after=20)
    await client.add_config_path("camsvc_a", conf)
    got = await client.get_config_path("camsvc_a")
    assert got.name == "camsvc_a"
    assert got.run_on_demand == conf.run_on_demand
    assert got.run_on_demand_close_after == "20s"
    assert got.record is False  # default filled in by the server

    await client.patch_config_path("camsvc_a", PathConf(max_readers=3))
    assert (await client.get_config_path("camsvc_a")).max_readers == 3

    await client.replace_config_path("camsvc_a", PathConf(source="rtsp://h/s"))
    replaced = await client.get_config_path("camsvc_a")
    assert (replaced.source, replaced.run_on_demand, replaced.max_readers) == ("rtsp://h/s", "", 0)

    await client.delete_config_path("camsvc_a")
    with pytest.raises(MediaMTXNotFound):
        await client.get_config_path("camsvc_a")


async def test_pagination(
    fake: FakeMediaMTX, client: MediaMTXClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(5):
        fake.set_config_path(f"p{i}")
    page = await client.list_config_paths(page=1, items_per_page=2)
    assert (page.item_count, page.page_count, [p.name for p in page.items]) == (5, 3, ["p2", "p3"])

    monkeypatch.setattr(client_module, "PAGE_SIZE", 2)
    everything = await client.list_all_config_paths()
    assert [p.name for p in everything] == [f"p{i}" for i in range(5)]
    assert len(fake.requests_for("configPathsList")) == 1 + 3
    assert len(await client.list_all_paths()) == 5


async def test_runtime_paths_reflect_config(fake: FakeMediaMTX, client: MediaMTXClient) -> None:
    fake.set_config_path("camsvc_a")
    fake.set_config_path("~^regex$")
    listing = await client.list_paths()
    assert [p.name for p in listing.items] == ["camsvc_a"]
    assert listing.items[0].is_ready is False

    fake.set_path_state("camsvc_a", ready=True, readers=2, bytes_sent=1000, bytes_received=50)
    path = await client.get_path("camsvc_a")
    assert (path.is_ready, path.reader_count, path.bytes_out, path.bytes_in) == (
        True,
        2,
        1000,
        50,
    )
    assert path.source_type == "rtspSession"
    with pytest.raises(MediaMTXNotFound):
        await client.get_path("nope")


async def test_recordings(fake: FakeMediaMTX, client: MediaMTXClient) -> None:
    assert (await client.list_recordings()).items == []
    fake.add_recording("camsvc_a", "2024-05-01T10:00:00Z", "2024-05-01T11:00:00Z")
    listing = await client.list_recordings()
    assert [r.name for r in listing.items] == ["camsvc_a"]
    assert [s.start for s in listing.items[0].segments] == [
        "2024-05-01T10:00:00Z",
        "2024-05-01T11:00:00Z",
    ]
    assert (await client.get_recording("camsvc_a")).name == "camsvc_a"
    with pytest.raises(MediaMTXNotFound):
        await client.get_recording("other")


# -- error mapping -----------------------------------------------------------------------


async def test_error_mapping(fake: FakeMediaMTX, client: MediaMTXClient) -> None:
    await client.add_config_path("camsvc_a", PathConf())
    with pytest.raises(MediaMTXRequestError, match="already exists"):
        await client.add_config_path("camsvc_a", PathConf())
    with pytest.raises(MediaMTXNotFound):
        await client.delete_config_path("camsvc_missing")
    await client.replace_config_path("camsvc_missing", PathConf())  # MediaMTX creates it
    assert "camsvc_missing" in fake.config_paths

    fake.fail_next(1, status=500, message="boom")
    with pytest.raises(MediaMTXServerError, match="boom"):
        await client.info()

    fake.fail_next(1, status=401, message="authentication error")
    with pytest.raises(MediaMTXError) as info:
        await client.info()
    assert type(info.value) is MediaMTXError
    assert info.value.status == 401


async def test_unavailable_when_stopped_then_back(
    fake: FakeMediaMTX, client: MediaMTXClient
) -> None:
    await client.info()
    await fake.stop()
    with pytest.raises(MediaMTXUnavailable):
        await client.info()
    await fake.start()
    assert (await client.info()).version


async def test_connection_drop_is_unavailable(fake: FakeMediaMTX, client: MediaMTXClient) -> None:
    fake.drop_next(1, operation="configPathsAdd")
    with pytest.raises(MediaMTXUnavailable):
        await client.add_config_path("camsvc_a", PathConf())
    # The client sends an idempotent request once more on a new connection when one closes
    # without an answer, so two drops in a row are needed to surface on a GET.
    fake.drop_next(2, operation="info")
    with pytest.raises(MediaMTXUnavailable):
        await client.info()
    assert (await client.info()).version


async def test_timeout_is_unavailable(fake: FakeMediaMTX, client: MediaMTXClient) -> None:
    fake.delay_next(1, 1.0, operation="info")
    with pytest.raises(MediaMTXUnavailable, match="timed out"):
        await client.info(request_timeout=0.1)


async def test_close_is_idempotent_and_reopens(fake: FakeMediaMTX) -> None:
    mtx = MediaMTXClient(fake.url + "/")
    assert mtx.base_url == fake.url
    await mtx.info()
    await mtx.close()
    await mtx.close()
    assert (await mtx.info()).version  # a new session is created lazily
    await mtx.close()


async def test_injected_session_is_not_closed(fake: FakeMediaMTX) -> None:
    session = HTTPClient(fake.url)
    mtx = MediaMTXClient(fake.url, session=session)
    await mtx.info()
    await mtx.close()
    assert not session.closed
    assert (await mtx.info()).version
    await session.close()
    with pytest.raises(MediaMTXError, match="injected HTTP client is closed"):
        await mtx.info()
