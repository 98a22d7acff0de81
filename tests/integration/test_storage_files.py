"""FileStore and usage against real files (media made with FFmpeg lavfi)."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from camera_service.storage.errors import FileInUse, InvalidFilename, NotFound, ProbeFailed
from camera_service.storage.files import FileStore
from camera_service.storage.listing import INDEX_NAME
from camera_service.storage.names import resolve_in
from camera_service.storage.usage import (
    DiskUsage,
    InsufficientStorage,
    check_can_write,
    storage_info,
)

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(
    FFMPEG is None or shutil.which("ffprobe") is None, reason="ffmpeg/ffprobe not installed"
)
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def _ffmpeg(*args: str) -> None:
    assert FFMPEG is not None
    cmd = [FFMPEG, "-hide_banner", "-loglevel", "error", "-y", *args]
    subprocess.run(cmd, check=True, timeout=60, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small real media files: 2 s recordings in three containers and a 320x240 image."""
    if FFMPEG is None:
        pytest.skip("ffmpeg not installed")
    out = tmp_path_factory.mktemp("media")
    src = ["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10", "-t", "2"]
    enc = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    files = {
        "mp4": out / "plain.mp4",
        "fmp4": out / "frag.mp4",
        "mkv": out / "clip.mkv",
        "jpg": out / "snap.jpg",
        "png": out / "snap.png",
    }
    _ffmpeg(*src, *enc, "-movflags", "+faststart", str(files["mp4"]))
    _ffmpeg(
        *src, *enc, "-movflags", "frag_keyframe+empty_moov+default_base_moof", str(files["fmp4"])
    )
    _ffmpeg(*src, *enc, str(files["mkv"]))
    img = ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=1", "-frames:v", "1"]
    _ffmpeg(*img, str(files["jpg"]))
    _ffmpeg(*img, str(files["png"]))
    return files


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    rec, snap = tmp_path / "recordings", tmp_path / "snapshots"
    rec.mkdir()
    snap.mkdir()
    return rec, snap


@pytest.fixture
def store(dirs: tuple[Path, Path]) -> FileStore:
    return FileStore(*dirs)


def _put(directory: Path, name: str, mtime: float, size: int = 10) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * size)
    os.utime(path, (mtime, mtime))
    return path


# ------------------------------------------------------------------ listing


async def test_listing_newest_first_paginated_and_filtered(
    store: FileStore, dirs: tuple[Path, Path]
) -> None:
    rec, _snap = dirs
    names = []
    for i in range(7):
        cam = f"camera{i % 2}"
        name = f"{cam}_2026-01-01_00-00-0{i}.mp4"
        _put(rec, name, T0 + i, size=100 + i)
        names.append(name)
    newest_first = names[::-1]

    page = await store.list("recordings", limit=3, offset=0)
    assert page.total == 7
    assert [e.filename for e in page.files] == newest_first[:3]
    page2 = await store.list("recordings", limit=3, offset=3)
    assert [e.filename for e in page2.files] == newest_first[3:6]
    tail = await store.list("recordings", limit=3, offset=6)
    assert [e.filename for e in tail.files] == newest_first[6:]
    beyond = await store.list("recordings", limit=3, offset=50)
    assert beyond.files == [] and beyond.total == 7

    cam1 = await store.list("recordings", limit=50, offset=0, device="camera1")
    assert cam1.total == 3
    assert {e.device for e in cam1.files} == {"camera1"}
    assert [e.filename for e in cam1.files] == [n for n in newest_first if "camera1" in n]

    first = page.files[0].to_dict()
    assert first == {
        "filename": names[6],
        "device": "camera0",
        "file_size": 106,
        "modified_time": "2026-01-01T00:00:06.000Z",
    }


async def test_empty_and_missing_directories_list_nothing(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "nope-rec", tmp_path / "nope-snap")
    listing = await store.list("snapshots")
    assert listing.files == [] and listing.total == 0
    with pytest.raises(ValueError):
        await store.list("snapshots", limit=0)


async def test_listing_skips_hidden_invalid_symlinks_and_dirs(
    store: FileStore, dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    _rec, snap = dirs
    _put(snap, "ok.jpg", T0)
    _put(snap, ".hidden.jpg", T0)
    _put(snap, "bad name.jpg", T0)
    _put(snap, "caméra.jpg", T0)
    outside = _put(tmp_path, "outside.jpg", T0)
    (snap / "link.jpg").symlink_to(outside)
    (snap / "subdir").mkdir()
    _put(snap / "subdir", "nested.jpg", T0)
    listing = await store.list("snapshots")
    assert [e.filename for e in listing.files] == ["ok.jpg"]


async def test_mediamtx_segments_are_listed_and_round_trip(
    store: FileStore, dirs: tuple[Path, Path]
) -> None:
    rec, _snap = dirs
    seg = _put(rec / "camera3", "2026-01-01_00-00-10-123456.mp4", T0 + 10, size=50)
    _put(rec / "camera3", "segment.mp4", T0 + 11)
    _put(rec, "camera3_segment.mp4", T0 + 12)  # top-level wins over the nested twin
    _put(rec / "cam era", "x.mp4", T0)  # invalid directory name: ignored
    _put(rec / "camera3", ".part.mp4", T0)  # hidden: ignored
    listing = await store.list("recordings")
    names = [e.filename for e in listing.files]
    assert names == ["camera3_segment.mp4", "camera3_2026-01-01_00-00-10-123456.mp4"]
    assert listing.files[0].path == (rec / "camera3_segment.mp4").resolve()
    for entry in listing.files:
        assert (await store.stat("recordings", entry.filename)).path == entry.path
    assert [e.device for e in listing.files] == [None, "camera3"]
    cam = await store.list("recordings", device="camera3")
    assert [e.filename for e in cam.files] == names[1:]

    # Every exposed name is a valid file name (it would resolve as a member of the dir).
    for name in names:
        resolve_in(rec, name)

    deleted = await store.delete("recordings", "camera3_2026-01-01_00-00-10-123456.mp4")
    assert deleted.size == 50
    assert not seg.exists()


async def test_user_named_file_keeps_its_device(store: FileStore, dirs: tuple[Path, Path]) -> None:
    _rec, snap = dirs
    when = datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC)
    path = await store.allocate("snapshots", "camera7", "jpg", requested="holiday", now=when)
    assert path == (snap / "holiday.jpg").resolve()
    _put(snap, "holiday.jpg", T0)
    gen = await store.allocate("snapshots", "camera7", "jpg", now=when)
    assert gen.name == "camera7_2026-01-01_00-00-05.jpg"
    _put(snap, gen.name, T0 + 1)
    gen2 = await store.allocate("snapshots", "camera7", "jpg", now=when)
    assert gen2.name == "camera7_2026-01-01_00-00-05_1.jpg"

    with pytest.raises(InvalidFilename) as info:
        await store.allocate("snapshots", "camera7", "jpg", requested="holiday.jpg")
    assert info.value.rule == "exists"
    with pytest.raises(InvalidFilename):
        await store.allocate("snapshots", "camera7", "jpg", requested="../holiday")

    listing = await store.list("snapshots", device="camera7")
    assert [e.filename for e in listing.files] == [gen.name, "holiday.jpg"]
    # A fresh store (restart) reads the index from disk.
    again = FileStore(*_dirs_of(store))
    assert (await again.stat("snapshots", "holiday.jpg")).device == "camera7"
    assert (snap / INDEX_NAME).exists()

    await again.delete("snapshots", "holiday.jpg")
    assert "holiday.jpg" not in (snap / INDEX_NAME).read_text()


def _dirs_of(store: FileStore) -> tuple[Path, Path]:
    return store.directory("recordings"), store.directory("snapshots")


# ------------------------------------------------------------------ info / probe


@needs_ffmpeg
@pytest.mark.parametrize("kind", ["mp4", "fmp4", "mkv"])
async def test_recording_info_reads_duration_and_format(
    store: FileStore, dirs: tuple[Path, Path], media: dict[str, Path], kind: str
) -> None:
    rec, _snap = dirs
    ext = ".mkv" if kind == "mkv" else ".mp4"
    name = f"camera0_2026-01-01_00-00-00{ext}"
    shutil.copy(media[kind], rec / name)
    info = await store.recording_info(name)
    assert info["format"] == kind
    assert info["duration"] == pytest.approx(2.0, abs=0.15)
    assert info["file_size"] == media[kind].stat().st_size
    assert info["device"] == "camera0"
    assert info["created_time"] == "2026-01-01T00:00:00.000Z"
    assert info["modified_time"].endswith("Z")


@needs_ffmpeg
@pytest.mark.parametrize("ext", ["jpg", "png"])
async def test_snapshot_info_reads_resolution(
    store: FileStore, dirs: tuple[Path, Path], media: dict[str, Path], ext: str
) -> None:
    _rec, snap = dirs
    shutil.copy(media[ext], snap / f"camera1_2026-01-01_00-00-00.{ext}")
    info = await store.snapshot_info(f"camera1_2026-01-01_00-00-00.{ext}")
    assert info["resolution"] == "320x240"
    assert info["device"] == "camera1"


@needs_ffmpeg
async def test_probe_of_garbage_fails_cleanly(store: FileStore, dirs: tuple[Path, Path]) -> None:
    rec, snap = dirs
    _put(rec, "junk.mp4", T0)
    _put(snap, "junk.jpg", T0)
    with pytest.raises(ProbeFailed):
        await store.recording_info("junk.mp4")
    with pytest.raises(ProbeFailed):
        await store.snapshot_info("junk.jpg")


async def test_missing_ffprobe_binary_is_probe_failed(dirs: tuple[Path, Path]) -> None:
    store = FileStore(*dirs, ffprobe_binary="/nonexistent/ffprobe")
    _put(dirs[0], "a.mp4", T0)
    with pytest.raises(ProbeFailed):
        await store.recording_info("a.mp4")


async def test_info_of_missing_or_bad_names(store: FileStore) -> None:
    with pytest.raises(NotFound):
        await store.recording_info("camera0_2026-01-01_00-00-00.mp4")
    with pytest.raises(NotFound):
        await store.snapshot_info("nothing.jpg")
    for bad in ("../x", "/etc/passwd", "a/b", "..%2Fx"):
        with pytest.raises(InvalidFilename):
            await store.recording_info(bad)


# ------------------------------------------------------------------ delete


async def test_delete_refuses_active_recording(store: FileStore, dirs: tuple[Path, Path]) -> None:
    rec, _snap = dirs
    active = _put(rec, "camera0_2026-01-01_00-00-00.mp4", T0)
    with pytest.raises(FileInUse):
        await store.delete("recordings", active.name, {rec / ".." / rec.name / active.name})
    assert active.exists()
    done = await store.delete("recordings", active.name, set())
    assert done.filename == active.name and not active.exists()
    with pytest.raises(NotFound):
        await store.delete("recordings", active.name, set())


async def test_delete_never_touches_outside_paths(
    store: FileStore, dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    _rec, snap = dirs
    victim = _put(tmp_path, "victim.jpg", T0)
    (snap / "link.jpg").symlink_to(victim)
    for bad in ("../victim.jpg", str(victim), "link.jpg", "..", "", "snapshots/../victim.jpg"):
        with pytest.raises(InvalidFilename):
            await store.delete("snapshots", bad, set())
    assert victim.exists()
    # A symlink to a file inside is not a listed file either: it is not found, the target stays.
    target = _put(snap, "real.jpg", T0)
    (snap / "alias.jpg").symlink_to(target)
    with pytest.raises(NotFound):
        await store.delete("snapshots", "alias.jpg", set())
    assert target.exists()
    with pytest.raises(ValueError):
        await store.delete("etc", "passwd", set())  # type: ignore[arg-type]


# ------------------------------------------------------------------ usage


def _fake_usage(total: int, used: int) -> DiskUsage:
    return DiskUsage(total, used, total - used)


async def test_storage_info_reports_sizes_and_flags(dirs: tuple[Path, Path]) -> None:
    rec, snap = dirs
    _put(rec, "a.mp4", T0, size=1000)
    _put(rec / "camera0", "seg.mp4", T0, size=500)
    _put(snap, "a.jpg", T0, size=300)
    info = await storage_info(rec, snap, 80, 90, disk_usage=lambda _p: _fake_usage(1000, 850))
    assert info == {
        "total_space": 1000,
        "used_space": 850,
        "available_space": 150,
        "usage_percentage": 85.0,
        "recordings_size": 1500,
        "snapshots_size": 300,
        "low_space_warning": True,
        "critical": False,
    }
    real = await storage_info(rec, snap, 80, 90)
    assert real["total_space"] > 0 and 0 <= real["usage_percentage"] <= 100


async def test_write_blocked_at_threshold(dirs: tuple[Path, Path]) -> None:
    rec, _snap = dirs
    ok = await check_can_write(rec, 90, disk_usage=lambda _p: _fake_usage(10_000, 8_999))
    assert ok.free == 1_001
    for used in (9_000, 10_000):

        def full(_path: Path, used: int = used) -> DiskUsage:
            return _fake_usage(10_000, used)

        with pytest.raises(InsufficientStorage) as info:
            await check_can_write(rec, 90, disk_usage=full)
        assert info.value.available_bytes == 10_000 - used
        assert info.value.threshold_bytes == 1_000
