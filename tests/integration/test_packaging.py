"""What an installed (non-editable) package serves: the wheel carries the browser client, and
the HTTP server finds it under the install prefix when it does not run from a checkout.
(scripts/install.sh installs such a wheel; before, `/` answered 404 there.)"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from camera_service.transport import http

ROOT = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT_S = 180


def _client_files() -> set[str]:
    client = ROOT / "client"
    return {p.relative_to(client).as_posix() for p in client.rglob("*") if p.is_file()}


def test_the_wheel_carries_every_browser_client_file(tmp_path: Path) -> None:
    source = tmp_path / "src"  # a copy, so the build leaves nothing in the checkout
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__"),
    )
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps"]  # as install.sh builds
    proc = subprocess.run(
        [*pip_wheel, "-q", "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("camera_service-*.whl")
    prefix = "/data/share/camera-service/client/"
    with zipfile.ZipFile(wheel) as archive:
        shipped = {name.split(prefix, 1)[1] for name in archive.namelist() if prefix in name}
    assert shipped == _client_files()


def test_outside_a_checkout_the_client_is_found_under_the_install_prefix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert http.bundled_client_dir() == http.SOURCE_CLIENT_DIR  # this checkout
    monkeypatch.setattr(http, "SOURCE_CLIENT_DIR", tmp_path / "no-checkout" / "client")
    assert http.bundled_client_dir() == Path(sys.prefix) / "share/camera-service/client"
