"""The systemd unit, sysusers.d and tmpfiles.d files: verified by systemd's own tools."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from camera_service.config import StorageConfig

REPO = Path(__file__).resolve().parents[2]
SYSTEMD_DIR = REPO / "systemd"
SERVICE = SYSTEMD_DIR / "camera-service.service"
MEDIAMTX = SYSTEMD_DIR / "mediamtx.service"
SYSUSERS = SYSTEMD_DIR / "camera-service.sysusers.conf"
TMPFILES = SYSTEMD_DIR / "camera-service.tmpfiles.conf"
DEPLOYMENT_DOC = REPO / "docs" / "deployment.md"

CAMERA_SERVICE_BIN = "/opt/camera-service/venv/bin/camera-service"
MEDIAMTX_BIN = "/usr/local/bin/mediamtx"
DATA_DIR = "/var/lib/camera-service"


def parse_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Sections of a unit file as ordered (key, value) lists; repeated keys are kept."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"{path}: entry before any section: {line}"
        key, _, value = line.partition("=")
        current.append((key.strip(), value.strip()))
    return sections


def values(section: list[tuple[str, str]], key: str) -> list[str]:
    return [v for k, v in section if k == key]


def one(section: list[tuple[str, str]], key: str) -> str:
    found = values(section, key)
    assert len(found) == 1, f"{key}: {found}"
    return found[0]


def seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|min|ms)?", value)
    assert m, value
    return float(m.group(1)) * {"s": 1, None: 1, "min": 60, "ms": 0.001}[m.group(2)]


def split_colon(line: str) -> list[str]:
    return line.split(":")


def systemd_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        print(f"SKIP: {name} not installed (apt-get install systemd)")
        pytest.skip(f"{name} not installed")
    return path


# --- content: what the issue asks of the units -------------------------------------------------


def test_camera_service_unit_content() -> None:
    unit = parse_unit(SERVICE)
    u, s, i = unit["Unit"], unit["Service"], unit["Install"]
    assert "mediamtx.service" in " ".join(values(u, "Wants")).split()
    assert "mediamtx.service" in " ".join(values(u, "After")).split()

    assert one(s, "Type") == "notify"
    assert one(s, "NotifyAccess") == "main"
    assert 5 <= seconds(one(s, "WatchdogSec")) <= 120
    assert one(s, "ExecStart") == f"{CAMERA_SERVICE_BIN} run"
    assert "CAMERA_SERVICE_CONFIG=/etc/camera-service/config.yaml" in values(s, "Environment")
    assert one(s, "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one(s, "Restart") == "on-failure"
    # Longer than the FFmpeg finalization (SIGINT, then SIGTERM after ffmpeg.stop_timeout).
    assert seconds(one(s, "TimeoutStopSec")) >= 30
    assert one(s, "KillMode") == "mixed"

    assert one(s, "User") == "camera-service"
    assert "video" in one(s, "SupplementaryGroups").split()
    assert one(s, "DevicePolicy") == "closed"
    assert one(s, "DeviceAllow") == "char-video4linux rw"
    assert one(s, "ProtectSystem") == "strict"
    assert one(s, "ReadWritePaths") == DATA_DIR
    for key in ("NoNewPrivileges", "PrivateTmp", "ProtectHome"):
        assert one(s, key) == "yes", key
    assert one(s, "RestrictAddressFamilies").split() == [
        "AF_UNIX",
        "AF_INET",
        "AF_INET6",
        "AF_NETLINK",
    ]
    assert one(s, "CapabilityBoundingSet") == ""
    assert values(s, "SystemCallFilter")[0] == "@system-service"
    assert one(i, "WantedBy") == "multi-user.target"


def test_mediamtx_unit_content() -> None:
    unit = parse_unit(MEDIAMTX)
    u, s = unit["Unit"], unit["Service"]
    assert one(s, "ExecStart") == f"{MEDIAMTX_BIN} /etc/mediamtx/mediamtx.yml"
    assert one(u, "ConditionFileIsExecutable") == MEDIAMTX_BIN
    assert one(s, "Restart") == "on-failure"
    assert one(s, "User") == "camera-service"
    assert one(s, "ReadWritePaths") == f"{DATA_DIR}/recordings"
    assert one(s, "NoNewPrivileges") == "yes"
    assert one(s, "CapabilityBoundingSet") == ""


def test_tmpfiles_match_storage_defaults() -> None:
    entries = {}
    for line in TMPFILES.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            kind, path, mode, user, group, *_ = line.split()
            entries[path] = (kind, mode, user, group)
    for sub in ("", "/recordings", "/snapshots", "/state"):
        assert entries[DATA_DIR + sub] == ("d", "0750", "camera-service", "camera-service")
    assert entries["/etc/camera-service/config.yaml"] == ("z", "0640", "root", "camera-service")
    # The defaults the daemon uses live under the one writable path of the unit.
    storage = StorageConfig()
    for default in (storage.recordings_dir, storage.snapshots_dir, storage.state_dir):
        assert str(default).startswith(DATA_DIR + "/"), default
        assert str(default) in entries, default


# --- systemd-analyze ---------------------------------------------------------------------------


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    """verify needs existing ExecStart binaries: check copies that point them at true(1)."""
    analyze = systemd_tool("systemd-analyze")
    true_bin = shutil.which("true")
    assert true_bin
    for unit in (SERVICE, MEDIAMTX):
        text = unit.read_text()
        for binary in (CAMERA_SERVICE_BIN, MEDIAMTX_BIN):
            text = text.replace(binary, true_bin)
        assert CAMERA_SERVICE_BIN not in text and MEDIAMTX_BIN not in text
        (tmp_path / unit.name).write_text(text)
    proc = subprocess.run(
        [analyze, "verify", "camera-service.service", "mediamtx.service"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr  # warnings too, e.g. unknown keys
    assert proc.stdout.strip() == ""


def test_verify_catches_a_bad_key(tmp_path: Path) -> None:
    """The check above is only worth something if verify reports problems here."""
    analyze = systemd_tool("systemd-analyze")
    true_bin = shutil.which("true") or "/bin/true"
    text = SERVICE.read_text().replace(CAMERA_SERVICE_BIN, true_bin)
    (tmp_path / "camera-service.service").write_text(text.replace("UMask=", "UMaskTypo="))
    (tmp_path / "mediamtx.service").write_text(MEDIAMTX.read_text())
    proc = subprocess.run(
        [analyze, "verify", "camera-service.service"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "UMaskTypo" in proc.stderr


def security_exposure(analyze: str, unit: Path) -> float:
    proc = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if proc.returncode != 0 and "offline" in proc.stderr:
        print(f"SKIP: this systemd-analyze has no --offline: {proc.stderr.strip()}")
        pytest.skip("systemd-analyze security --offline unsupported")
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d)", proc.stdout)
    assert m, proc.stdout + proc.stderr
    return float(m.group(1))


def test_security_exposure_is_low_and_documented() -> None:
    analyze = systemd_tool("systemd-analyze")
    exposure = security_exposure(analyze, SERVICE)
    assert exposure <= 2.0, exposure  # "OK" is < 4.0; keep well inside it
    assert security_exposure(analyze, MEDIAMTX) <= 2.0
    doc = DEPLOYMENT_DOC.read_text()
    assert f"{exposure:.1f}" in doc, f"docs/deployment.md should report exposure {exposure:.1f}"


def test_sysusers_and_tmpfiles_apply_to_a_root(tmp_path: Path) -> None:
    """systemd-sysusers and systemd-tmpfiles, as at first boot, on an empty staging root."""
    sysusers = systemd_tool("systemd-sysusers")
    tmpfiles = systemd_tool("systemd-tmpfiles")
    if os.geteuid() != 0:
        print("SKIP: needs root to chown in the staging root")
        pytest.skip("needs root")
    root = tmp_path / "root"
    (root / "etc" / "camera-service").mkdir(parents=True)
    (root / "etc" / "camera-service" / "config.yaml").write_text("{}\n")
    subprocess.run([sysusers, f"--root={root}", str(SYSUSERS)], check=True, timeout=30)
    passwd = {f[0]: f for f in map(split_colon, (root / "etc/passwd").read_text().splitlines())}
    groups = {f[0]: f for f in map(split_colon, (root / "etc/group").read_text().splitlines())}
    user = passwd["camera-service"]
    uid, gid = int(user[2]), int(user[3])
    assert user[6] == "/usr/sbin/nologin"
    assert "camera-service" in groups["video"][3].split(",")
    assert int(groups["camera-service"][2]) == gid

    subprocess.run([tmpfiles, f"--root={root}", "--create", str(TMPFILES)], check=True, timeout=30)
    for sub in ("", "/recordings", "/snapshots", "/state"):
        st = (root / DATA_DIR.lstrip("/") / sub.lstrip("/")).stat()
        assert stat.S_ISDIR(st.st_mode)
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o750, uid, gid), sub
    st = (root / "etc/camera-service").stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o750, 0, gid)
    st = (root / "etc/camera-service/config.yaml").stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 0, gid)
