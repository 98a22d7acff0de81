"""Pure naming rules of camera_service.storage.names (no media, no processes)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from camera_service.storage.errors import InvalidFilename
from camera_service.storage.mediainfo import container_format
from camera_service.storage.names import (
    device_from_name,
    generated_filename,
    iso_utc,
    resolve_in,
    stamp_from_name,
    validate_filename,
    with_extension,
)

NASTY = [
    ("", "empty"),
    ("../x", "dot_dot"),
    ("..", "dot_dot"),
    ("a..b", "dot_dot"),
    ("/etc/passwd", "charset"),
    ("a\x00b", "charset"),
    ("..%2Fx", "dot_dot"),
    ("%2e%2e", "charset"),
    ("%2e%2e%2fetc", "charset"),
    ("a/b", "charset"),
    ("a\\b", "charset"),
    ("..\\x", "dot_dot"),
    (".hidden", "charset"),
    ("-rf", "charset"),
    ("_x", "charset"),
    ("a" * 129, "too_long"),
    ("caméra.jpg", "charset"),
    ("\uff43\uff41\uff4d.jpg", "charset"),  # fullwidth "cam"
    ("snap\u202ejpg.exe", "charset"),
    ("a b", "charset"),
    ("a\n", "charset"),
    ("a\nb", "charset"),
    ("a:b", "charset"),
    ("a*", "charset"),
    ("C:\\x", "charset"),
    ("~root", "charset"),
]

GOOD = ["a", "A", "0", "snap.jpg", "camera0_2026-01-02_03-04-05.mp4", "a-b_c.d", "a" * 128]


@pytest.mark.parametrize(("name", "rule"), NASTY)
def test_nasty_names_are_refused_with_a_rule(name: str, rule: str) -> None:
    with pytest.raises(InvalidFilename) as info:
        validate_filename(name)
    assert info.value.rule == rule
    assert info.value.hint


@pytest.mark.parametrize("name", GOOD)
def test_good_names_pass(name: str) -> None:
    assert validate_filename(name) == name


@pytest.mark.parametrize(("name", "_rule"), NASTY)
def test_resolve_in_refuses_nasty_names(tmp_path: Path, name: str, _rule: str) -> None:
    with pytest.raises(InvalidFilename):
        resolve_in(tmp_path, name)


@pytest.mark.parametrize("name", GOOD)
def test_resolve_in_accepts_plain_members(tmp_path: Path, name: str) -> None:
    assert resolve_in(tmp_path, name) == tmp_path.resolve() / name


def test_resolve_in_refuses_symlink_pointing_out(tmp_path: Path) -> None:
    inner = tmp_path / "store"
    inner.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("x")
    (inner / "link.jpg").symlink_to(secret)
    (inner / "dirlink").symlink_to(tmp_path)
    (inner / "loop").symlink_to(inner / "loop")
    for name in ("link.jpg", "dirlink", "loop"):
        with pytest.raises(InvalidFilename) as info:
            resolve_in(inner, name)
        assert info.value.rule == "outside", name


def test_resolve_in_accepts_symlink_inside_and_refuses_directories(tmp_path: Path) -> None:
    (tmp_path / "real.jpg").write_bytes(b"x")
    (tmp_path / "alias.jpg").symlink_to(tmp_path / "real.jpg")
    assert resolve_in(tmp_path, "alias.jpg") == tmp_path.resolve() / "real.jpg"
    (tmp_path / "camera0").mkdir()
    with pytest.raises(InvalidFilename) as info:
        resolve_in(tmp_path, "camera0")
    assert info.value.rule == "not_a_file"


def test_resolve_in_result_never_escapes(tmp_path: Path) -> None:
    # Every accepted result is a direct child of the directory.
    for name in [*GOOD, *(n for n, _ in NASTY)]:
        try:
            path = resolve_in(tmp_path, name)
        except InvalidFilename:
            continue
        assert path.parent == tmp_path.resolve()
        assert os.sep not in path.name


@pytest.mark.parametrize(
    ("name", "ext", "aliases", "expected"),
    [
        ("snap", "jpg", (), "snap.jpg"),
        ("snap.jpg", "jpg", (), "snap.jpg"),
        ("snap.JPG", ".jpg", (), "snap.JPG"),
        ("snap.jpeg", "jpg", ("jpeg",), "snap.jpeg"),
        ("snap.png", "jpg", (), "snap.png.jpg"),
        ("rec", "mp4", (), "rec.mp4"),
        ("a" * 124, "mp4", (), "a" * 124 + ".mp4"),
    ],
)
def test_with_extension(name: str, ext: str, aliases: tuple[str, ...], expected: str) -> None:
    assert with_extension(name, ext, aliases) == expected


def test_with_extension_refuses_when_result_too_long() -> None:
    with pytest.raises(InvalidFilename) as info:
        with_extension("a" * 125, "mp4")
    assert info.value.rule == "too_long"


def test_generated_names_are_utc_and_unique() -> None:
    when = datetime(2026, 1, 2, 4, 4, 5, tzinfo=timezone(timedelta(hours=1)))
    assert generated_filename("camera0", "jpg", when) == "camera0_2026-01-02_03-04-05.jpg"
    taken = {"camera0_2026-01-02_03-04-05.mp4", "camera0_2026-01-02_03-04-05_1.mp4"}
    name = generated_filename("camera0", ".mp4", when, taken.__contains__)
    assert name == "camera0_2026-01-02_03-04-05_2.mp4"


def test_generated_name_refuses_unsafe_device() -> None:
    with pytest.raises(InvalidFilename):
        generated_filename("../cam", "jpg", datetime.now(UTC))


@pytest.mark.parametrize(
    ("name", "device"),
    [
        ("camera0_2026-01-02_03-04-05.mp4", "camera0"),
        ("camera12_2026-01-02_03-04-05_3.jpg", "camera12"),
        ("front_door_2026-01-02_03-04-05.mp4", "front_door"),
        ("camera0_2026-01-02_03-04-05-123456.mp4", "camera0"),
        ("holiday.mp4", None),
        ("camera0.jpg", None),
    ],
)
def test_device_from_name(name: str, device: str | None) -> None:
    assert device_from_name(name) == device


def test_stamp_from_name_and_iso() -> None:
    stamp = stamp_from_name("camera0_2026-01-02_03-04-05.mp4")
    assert stamp == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert iso_utc(stamp.timestamp()) == "2026-01-02T03:04:05.000Z"
    assert stamp_from_name("x.mp4") is None


def test_container_format_maps_names(tmp_path: Path) -> None:
    frag = tmp_path / "f.mp4"
    frag.write_bytes(_box(b"ftyp", 8) + _box(b"moov", 16) + _box(b"moof", 8) + _box(b"mdat", 8))
    plain = tmp_path / "p.mp4"
    plain.write_bytes(_box(b"ftyp", 8) + _box(b"mdat", 32) + _box(b"moov", 16))
    mp4_names = "mov,mp4,m4a,3gp,3g2,mj2"
    assert container_format(mp4_names, frag) == "fmp4"
    assert container_format(mp4_names, plain) == "mp4"
    assert container_format("matroska,webm", plain) == "mkv"
    assert container_format("avi", plain) == "avi"


def _box(kind: bytes, payload: int) -> bytes:
    return (8 + payload).to_bytes(4, "big") + kind + b"\0" * payload
