"""Damaged state files at start (issue 10, item 14): one rule for every file.

Credential files (api_keys.json, jwt_secret) stop the start with a message naming the file and
the problem; every other state file is moved aside to ``<name>.corrupt-<UTC time>`` (its bytes
kept) and the daemon starts with defaults.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from camera_service.app import Application, StartupError
from camera_service.fsutil import StateFileError
from camera_service.mediamtx.paths import PathOwnership
from tests.support.daemon import make_config, run_cli, running_daemon

BROKEN_JSON = {
    "empty": b"",
    "blank": b"  \n",
    "truncated": b'{"version": 1, "keys": [{"id": "ab',
    "binary": b"\x00\xff\xfe\x80garbage",
}

BROKEN_KEY_FILES = {
    **BROKEN_JSON,
    "list": b"[]",
    "keys_null": b'{"version": 1, "keys": null}',
    "missing_fields": b'{"version": 1, "keys": [{"id": "ab12"}]}',
    "bad_role": (
        b'{"version": 1, "keys": [{"id": "ab12", "name": "x", "role": "root", "hash": "00",'
        b' "created_at": "2026-01-01T00:00:00+00:00"}]}'
    ),
    "record_not_object": b'{"version": 1, "keys": ["csk_ab12"]}',
}


@pytest.mark.parametrize("content", BROKEN_KEY_FILES.values(), ids=BROKEN_KEY_FILES.keys())
def test_damaged_key_store_refuses_start_naming_the_file(tmp_path: Path, content: bytes) -> None:
    config = make_config(tmp_path)
    config.storage.state_dir.mkdir(parents=True)
    config.api_keys_file.write_bytes(content)
    with pytest.raises(StartupError) as info:
        Application(config)
    message = str(info.value)
    assert str(config.api_keys_file) in message
    assert "unusable" in message and "restore it from a backup" in message
    # Nothing was changed: the operator restores or inspects the very file.
    assert config.api_keys_file.read_bytes() == content


def test_cli_key_commands_name_the_damaged_file_without_a_traceback(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    keys = state / "api_keys.json"
    keys.write_bytes(b'{"keys": null}')
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"storage": {"state_dir": str(state)}}))
    done = run_cli("--config", str(config), "keys", "list")
    assert done.returncode != 0
    assert str(keys) in done.stderr and "'keys' is missing or not a list" in done.stderr
    assert "Traceback" not in done.stderr
    assert keys.read_bytes() == b'{"keys": null}'


@pytest.mark.parametrize(
    "content", [b"", b"short", b"\xff\xfe\x00" * 20], ids=["empty", "short", "binary"]
)
def test_damaged_jwt_secret_refuses_start_naming_the_file(tmp_path: Path, content: bytes) -> None:
    config = make_config(tmp_path)
    config.storage.state_dir.mkdir(parents=True)
    config.jwt_secret_file.write_bytes(content)
    with pytest.raises(StartupError) as info:
        Application(config)
    assert str(config.jwt_secret_file) in str(info.value)
    assert config.jwt_secret_file.read_bytes() == content


RECOVERABLE = {
    **BROKEN_JSON,
    "wrong_shape": b'{"streams": 1}',
    "wrong_entry": b'[{"stream_url": 5}]',
}


def _corrupt_copies(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.corrupt-*"))


@pytest.mark.parametrize("content", RECOVERABLE.values(), ids=RECOVERABLE.keys())
async def test_damaged_external_streams_file_is_moved_aside_and_the_daemon_starts(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    path = state / "external_streams.json"
    path.write_bytes(content)
    caplog.set_level(logging.ERROR)
    async with running_daemon(tmp_path) as daemon, daemon.client("operator") as client:
        assert (await client.call("get_external_streams"))["total_count"] == 0
        copies = _corrupt_copies(path)
        assert len(copies) == 1 and copies[0].read_bytes() == content
        assert any(
            str(path) in r.getMessage() and str(copies[0]) in r.getMessage() for r in caplog.records
        )
        # The store works again: a new stream is persisted to a fresh, valid file.
        await client.call(
            "add_external_stream",
            {"stream_url": "rtsp://192.0.2.1/live", "stream_name": "gate"},
        )
    assert json.loads(path.read_text())[0]["stream_name"] == "gate"


@pytest.mark.parametrize(
    "content",
    [*BROKEN_JSON.values(), b"[1, 2]", b'{"policy_type": "age"}', b'{"policy_type": "never"}'],
    ids=[*BROKEN_JSON.keys(), "list", "age_without_days", "unknown_type"],
)
async def test_damaged_retention_file_is_moved_aside_and_the_configured_policy_applies(
    tmp_path: Path, content: bytes
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    path = state / "retention.json"
    path.write_bytes(content)
    overrides = {"retention": {"policy_type": "age", "max_age_days": 3, "enabled": True}}
    async with running_daemon(tmp_path, overrides) as daemon, daemon.client("admin") as client:
        policy = await client.call("get_retention_policy")
        assert (policy["policy_type"], policy["max_age_days"]) == ("age", 3)
    copies = _corrupt_copies(path)
    assert len(copies) == 1 and copies[0].read_bytes() == content
    assert not path.exists()


@pytest.mark.parametrize(
    "content", [b"\xff\xfe{", b"", b'{"paths": 3}'], ids=["binary", "empty", "shape"]
)
async def test_damaged_mediamtx_ownership_file_is_moved_aside(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "mediamtx_paths.json"
    path.write_bytes(content)
    ownership = PathOwnership(path)
    assert ownership.names() == frozenset()
    copies = _corrupt_copies(path)
    assert len(copies) == 1 and copies[0].read_bytes() == content


async def test_sighup_reload_keeps_the_policy_when_the_file_is_damaged(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as daemon, daemon.client("admin") as client:
        await client.call(
            "set_retention_policy", {"policy_type": "size", "max_size_gb": 2, "enabled": True}
        )
        path = tmp_path / "state" / "retention.json"
        path.write_bytes(b'{"policy_type": ')
        daemon.app.reload()
        policy = await client.call("get_retention_policy")
        assert (policy["policy_type"], policy["max_size_gb"]) == ("size", 2)
        assert path.read_bytes() == b'{"policy_type": '  # left for the operator to fix


def test_state_file_error_names_the_file_and_the_problem(tmp_path: Path) -> None:
    error = StateFileError(tmp_path / "x.json", "the file is empty")
    assert str(error) == f"state file {tmp_path / 'x.json'} is unusable: the file is empty"


async def test_damaged_file_index_is_moved_aside_and_listing_works(tmp_path: Path) -> None:
    snapshots = tmp_path / "snapshots"
    snapshots.mkdir()
    (snapshots / "gate.jpg").write_bytes(b"\xff\xd8\xff" * 10)
    index = snapshots / ".index.json"
    index.write_bytes(b"\xff\xfe not json")
    async with running_daemon(tmp_path) as daemon, daemon.client("viewer") as client:
        listing = await client.call("list_snapshots")
        assert [f["filename"] for f in listing["files"]] == ["gate.jpg"]
        copies = _corrupt_copies(index)
        assert len(copies) == 1 and copies[0].read_bytes() == b"\xff\xfe not json"
        assert not index.exists()
