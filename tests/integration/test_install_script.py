"""scripts/install.sh and scripts/uninstall.sh: dry runs and real runs into a staging root."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

import camera_service

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "scripts" / "install.sh"
UNINSTALL = REPO / "scripts" / "uninstall.sh"
VERSION = camera_service.__version__

Tree = dict[str, tuple[str, int, str]]


def sh(script: Path, *args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["bash", str(script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "LC_ALL": "C"},
    )
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def tree(root: Path) -> Tree:
    """path -> (kind, mode, content hash or link target) for everything under root."""
    out: Tree = {}
    if not root.exists():
        return out
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        rel = str(p.relative_to(root))
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ("link", 0, os.readlink(p))
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = ("dir", stat.S_IMODE(st.st_mode), "")
        else:
            digest = hashlib.sha256(p.read_bytes()).hexdigest()
            out[rel] = ("file", stat.S_IMODE(st.st_mode), digest)
    return out


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def config_src(tmp_path: Path) -> Path:
    src = tmp_path / "config-src.yaml"
    src.write_text("# initial config\nserver:\n  port: 8002\n")
    return src


@pytest.fixture
def fake_python(tmp_path: Path) -> Path:
    """A python3 stand-in: `-c` succeeds, `-m venv DIR` makes a venv whose pip writes a script
    with DIR in its #! line, as a real venv does (a real pip install takes too long here)."""
    py = tmp_path / "fake-python3"
    py.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = -c ]; then exit 0; fi\n'
        '[ "$1" = -m ] && [ "$2" = venv ] || exit 2\n'
        'mkdir -p "$3/bin"\n'
        'printf \'#!/bin/sh\\nprintf "#!%s/bin/python\\\\n" > "%s/bin/camera-service"\\n\' '
        '"$3" "$3" > "$3/bin/pip"\n'
        'chmod +x "$3/bin/pip"\n'
    )
    py.chmod(0o755)
    return py


# --- static checks ------------------------------------------------------------------------------


def test_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        print("SKIP: shellcheck not installed (apt-get install -y shellcheck)")
        pytest.skip("shellcheck not installed")
    common = INSTALL.parent / "deploy-common.sh"
    proc = subprocess.run(
        [shellcheck, "-x", str(INSTALL), str(UNINSTALL), str(common)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=INSTALL.parent.parent,  # the scripts' `source=` directives are repository-relative
    )
    assert proc.returncode == 0, proc.stdout


def test_scripts_are_strict_and_executable() -> None:
    for script in (INSTALL, UNINSTALL):
        assert "set -euo pipefail" in script.read_text()
        assert os.access(script, os.X_OK), script


def test_help_and_unknown_option() -> None:
    for script in (INSTALL, UNINSTALL):
        assert "--dry-run" in sh(script, "--help").stdout
        proc = sh(script, "--bogus", check=False)
        assert proc.returncode != 0
        assert "unknown option: --bogus" in proc.stderr


# --- dry runs -----------------------------------------------------------------------------------


def test_dry_run_live_system_prints_every_action(config_src: Path) -> None:
    out = sh(INSTALL, "--dry-run", "--config-src", config_src).stdout
    lines = out.splitlines()
    assert lines[0] == "= dry run: printing actions only, nothing is changed"
    assert all(line[:2] in ("+ ", "~ ", "= ") for line in lines), out
    expected = [
        "+ install -m 0644 {repo}/systemd/camera-service.sysusers.conf "
        "/etc/sysusers.d/camera-service.conf",
        "+ install -m 0644 {repo}/systemd/camera-service.tmpfiles.conf "
        "/etc/tmpfiles.d/camera-service.conf",
        "+ echo videodev > /etc/modules-load.d/camera-service.conf"
        " && chmod 0644 /etc/modules-load.d/camera-service.conf",
        "+ install -d -m 0750 -o root -g camera-service /etc/camera-service",
        "+ install -d -m 0750 -o camera-service -g camera-service /var/lib/camera-service",
        "+ install -d -m 0750 -o camera-service -g camera-service "
        "/var/lib/camera-service/recordings",
        "+ install -d -m 0750 -o camera-service -g camera-service "
        "/var/lib/camera-service/snapshots",
        "+ install -d -m 0750 -o camera-service -g camera-service /var/lib/camera-service/state",
        "+ ln -sfn releases/{version} /opt/camera-service/venv.new",
        "+ mv -T /opt/camera-service/venv.new /opt/camera-service/venv",
        "+ install -m 0644 {repo}/systemd/camera-service.service "
        "/etc/systemd/system/camera-service.service",
        "+ install -m 0644 {repo}/systemd/mediamtx.service /etc/systemd/system/mediamtx.service",
    ]
    for line in expected:
        assert line.format(repo=REPO, version=VERSION) in lines, line
    if not Path(f"/opt/camera-service/releases/{VERSION}/.installed").exists():
        assert f"+ python3 -m venv /opt/camera-service/releases/{VERSION}" in lines
        assert any(
            line.startswith(f"+ /opt/camera-service/releases/{VERSION}/bin/pip install ")
            and line.endswith("/camera-service-src.XXXXXX")
            for line in lines
        )
        # Built from a clean copy of the checkout, not in-tree.
        assert any(
            line.startswith(f"+ tar -C {REPO} --exclude=./.git --exclude=./build")
            and line.endswith("/camera-service-src.XXXXXX -xf -")
            for line in lines
        )
    if not Path("/etc/camera-service/config.yaml").exists():
        assert (
            f"+ install -m 0640 -o root -g camera-service {config_src} "
            "/etc/camera-service/config.yaml"
        ) in lines
    # The user: created through sysusers.d (or useradd where sysusers is missing) unless present.
    assert any(
        line.startswith(("+ systemd-sysusers ", "+ useradd ", "= user camera-service exists"))
        for line in lines
    )
    # systemctl runs only where systemd is running; otherwise it is listed as not done.
    enable = "systemctl enable camera-service.service mediamtx.service"
    assert f"+ {enable}" in lines or any(line.startswith(f"~ {enable}  # ") for line in lines)


def test_dry_run_staging_root_changes_nothing(tmp_path: Path, config_src: Path) -> None:
    root = tmp_path / "stage"
    out = sh(INSTALL, "--dry-run", "--root", root, "--config-src", config_src).stdout
    assert not root.exists()
    lines = out.splitlines()
    assert f"+ install -m 0640 {config_src} {root}/etc/camera-service/config.yaml" in lines
    assert f"+ python3 -m venv {root}/opt/camera-service/releases/{VERSION}" in lines
    staging = "# not done: staging root"
    for deferred in (
        "~ systemd-sysusers /etc/sysusers.d/camera-service.conf",
        "~ chown camera-service:camera-service /var/lib/camera-service/state",
        "~ chown root:camera-service /etc/camera-service/config.yaml",
        "~ systemctl daemon-reload",
        "~ systemctl enable camera-service.service mediamtx.service",
    ):
        assert any(line.startswith(deferred + "  " + staging) for line in lines), deferred
    # Nothing outside the staging root is written to, not even in print.
    for line in lines:
        if line.startswith("+ install ") or line.startswith("+ ln "):
            assert str(root) in line, line
    assert not any(line.startswith(("+ useradd", "+ systemctl", "+ chown")) for line in lines)


# --- real runs into a staging root --------------------------------------------------------------


def test_install_into_root_tree_modes_and_idempotence(tmp_path: Path, config_src: Path) -> None:
    root = tmp_path / "stage"
    sh(INSTALL, "--root", root, "--no-venv", "--config-src", config_src)

    etc = root / "etc"
    for unit in ("camera-service.service", "mediamtx.service"):
        installed = etc / "systemd" / "system" / unit
        assert installed.read_bytes() == (REPO / "systemd" / unit).read_bytes()
        assert mode(installed) == 0o644
    sysusers = etc / "sysusers.d" / "camera-service.conf"
    assert sysusers.read_bytes() == (REPO / "systemd/camera-service.sysusers.conf").read_bytes()
    tmpfiles = etc / "tmpfiles.d" / "camera-service.conf"
    assert tmpfiles.read_bytes() == (REPO / "systemd/camera-service.tmpfiles.conf").read_bytes()
    assert (etc / "modules-load.d" / "camera-service.conf").read_text() == "videodev\n"

    config = etc / "camera-service" / "config.yaml"
    assert config.read_text() == config_src.read_text()
    assert mode(config) == 0o640
    assert mode(etc / "camera-service") == 0o750
    data = root / "var" / "lib" / "camera-service"
    for sub in ("", "recordings", "snapshots", "state"):
        assert (data / sub).is_dir()
        assert mode(data / sub) == 0o750, sub
    assert mode(root / "opt" / "camera-service") == 0o755
    assert not (root / "opt" / "camera-service" / "venv").exists()  # --no-venv

    # Second run with different defaults: the config is kept, and nothing else changes.
    before = tree(root)
    config_src.write_text("# new defaults\n")
    out = sh(INSTALL, "--root", root, "--no-venv", "--config-src", config_src).stdout
    assert "= keeping existing /etc/camera-service/config.yaml" in out
    assert config.read_text() == "# initial config\nserver:\n  port: 8002\n"
    assert tree(root) == before


def test_install_venv_release_switch_and_rollback_set(
    tmp_path: Path, config_src: Path, fake_python: Path
) -> None:
    root = tmp_path / "stage"
    prefix = root / "opt" / "camera-service"
    args = ("--root", root, "--python", fake_python, "--config-src", config_src)

    sh(INSTALL, *args)
    release = prefix / "releases" / VERSION
    assert os.readlink(prefix / "venv") == f"releases/{VERSION}"
    assert (release / ".installed").is_file()
    # The #! line names the final path, not the staging one.
    script = (prefix / "venv" / "bin" / "camera-service").read_text()
    assert script == f"#!/opt/camera-service/releases/{VERSION}/bin/python\n"

    out = sh(INSTALL, *args).stdout
    assert f"= release {VERSION} already installed" in out
    assert sorted(p.name for p in (prefix / "releases").iterdir()) == [VERSION]

    # --reinstall builds a new release next to the old ones and switches to it; the newest 3
    # stay for rollback, the current one always.
    built = [VERSION]
    for _ in range(4):
        out = sh(INSTALL, *args, "--reinstall").stdout
        target = os.readlink(prefix / "venv")
        assert target.startswith(f"releases/{VERSION}-")
        name = target.removeprefix("releases/")
        assert name not in built
        assert f"+ {fake_python} -m venv {prefix}/releases/{name}" in out.splitlines()
        built.append(name)
    assert sorted(p.name for p in (prefix / "releases").iterdir()) == sorted(built[-3:])


def test_uninstall_keeps_data_unless_purge(tmp_path: Path, config_src: Path) -> None:
    root = tmp_path / "stage"
    sh(INSTALL, "--root", root, "--no-venv", "--config-src", config_src)
    recording = root / "var/lib/camera-service/recordings/cam0_2024-01-01.mp4"
    recording.write_bytes(b"\0" * 16)
    (root / "etc/systemd/system/camera-service.service.d").mkdir()

    before = tree(root)
    out = sh(UNINSTALL, "--root", root, "--dry-run").stdout
    assert f"+ rm -rf {root}/etc/systemd/system/camera-service.service" in out.splitlines()
    assert tree(root) == before

    out = sh(UNINSTALL, "--root", root).stdout
    assert "~ systemctl disable --now camera-service.service mediamtx.service" in out
    assert not (root / "etc/systemd/system/camera-service.service").exists()
    assert not (root / "etc/systemd/system/mediamtx.service").exists()
    assert not (root / "etc/sysusers.d/camera-service.conf").exists()
    assert not (root / "etc/tmpfiles.d/camera-service.conf").exists()
    assert not (root / "opt/camera-service").exists()
    assert recording.exists()
    assert (root / "etc/camera-service/config.yaml").exists()
    assert (root / "etc/systemd/system/camera-service.service.d").exists()

    sh(UNINSTALL, "--root", root)  # idempotent

    out = sh(UNINSTALL, "--root", root, "--purge").stdout
    assert "~ userdel camera-service  # not done: staging root" in out
    assert not (root / "var/lib/camera-service").exists()
    assert not (root / "etc/camera-service").exists()
    assert not (root / "etc/systemd/system/camera-service.service.d").exists()
