"""Run the daemon for tests: in-process (fast, inspectable) or as a subprocess (signals, CLI)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from camera_service.app import Application
from camera_service.auth.roles import Role
from camera_service.client import CameraClient
from camera_service.config import Config, build_config, deep_merge


def base_config(tmp_path: Path) -> dict[str, Any]:
    return {
        "server": {"host": "127.0.0.1", "port": 0},
        "http": {"host": "127.0.0.1", "port": 0},
        "storage": {
            "recordings_dir": str(tmp_path / "recordings"),
            "snapshots_dir": str(tmp_path / "snapshots"),
            "state_dir": str(tmp_path / "state"),
        },
        "cameras": {"discovery": "off"},
        "mediamtx": {"enabled": False},
        # No encoder probe (five test encodes) at every test daemon's start; the probe has
        # its own tests (tests/integration/test_encoder_probe.py, test_camera_controls.py).
        "ffmpeg": {"video_encoder": "libx264"},
        "logging": {"level": "INFO", "format": "json"},
    }


def make_config(tmp_path: Path, overrides: dict[str, Any] | None = None) -> Config:
    return build_config(deep_merge(base_config(tmp_path), overrides or {}))


@dataclass
class RunningDaemon:
    app: Application
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.app.ws.port}{self.app.config.server.path}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.app.http.port}"

    def token(self, role: Role, ttl: float = 3600, user: str = "tester") -> str:
        return self.app.jwt.issue(user, role, ttl)

    @asynccontextmanager
    async def client(self, role: str | None = None, **kwargs: Any) -> AsyncIterator[CameraClient]:
        async with CameraClient(self.ws_url, **kwargs) as client:
            if role is not None:
                await client.authenticate(self.keys[role])
            yield client


@asynccontextmanager
async def running_daemon(
    tmp_path: Path, overrides: dict[str, Any] | None = None, **seams: Any
) -> AsyncIterator[RunningDaemon]:
    """`seams`: `event_source=` / `prober=` for injected fake cameras."""
    app = Application(make_config(tmp_path, overrides), **seams)
    await app.start()
    daemon = RunningDaemon(app)
    for role in Role:
        key, _ = app.keys.create(f"test-{role.label}", role)
        daemon.keys[role.label] = key
    try:
        yield daemon
    finally:
        await app.stop()


class DaemonProcess:
    """`camera-service run` in a child process with a YAML config in tmp_path."""

    def __init__(
        self,
        tmp_path: Path,
        overrides: dict[str, Any] | None = None,
        args: tuple[str, ...] = ("run",),
        env: dict[str, str] | None = None,
    ) -> None:
        self.tmp_path = tmp_path
        self.env = env or {}
        self.config_file = tmp_path / "config.yaml"
        self.config_file.write_text(
            yaml.safe_dump(deep_merge(base_config(tmp_path), overrides or {}))
        )
        self.args = args
        self.proc: asyncio.subprocess.Process | None = None
        self.ws_port = 0
        self.http_port = 0
        self.log_lines: list[str] = []
        self._new_line = asyncio.Condition()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli("--config", str(self.config_file), *args)

    async def start(self, timeout: float = 20.0) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "camera_service",
            "--config",
            str(self.config_file),
            *self.args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
        )
        await asyncio.wait_for(self._wait_started(), timeout)
        self._pump = asyncio.create_task(self._drain())

    async def _wait_started(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            line = (await self.proc.stdout.readline()).decode()
            if not line:
                raise RuntimeError("daemon exited during start:\n" + "".join(self.log_lines))
            self.log_lines.append(line)
            if "camera-service started" in line:
                self.ws_port = int(re.search(r'"ws_port": (\d+)', line).group(1))  # type: ignore[union-attr]
                self.http_port = int(re.search(r'"http_port": (\d+)', line).group(1))  # type: ignore[union-attr]
                return

    async def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.log_lines.append(raw.decode())
            async with self._new_line:
                self._new_line.notify_all()

    async def wait_for_log(self, fragment: str, timeout: float = 10.0) -> str:
        """The first log line containing `fragment`, waiting for it to be written."""

        async def find() -> str:
            async with self._new_line:
                while True:
                    for line in self.log_lines:
                        if fragment in line:
                            return line
                    await self._new_line.wait()

        return await asyncio.wait_for(find(), timeout)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/ws"

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        await asyncio.wait_for(self._pump, timeout)
        return code

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "camera_service", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
