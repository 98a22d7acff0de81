"""Real Mosquitto brokers for tests: own config file, free loopback port, optional bridge,
password file and TLS; plus a recording MQTT client to wait on retained state."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def require_mosquitto() -> None:
    if not Path(MOSQUITTO).exists():
        pytest.skip("mosquitto missing (apt-get install -y mosquitto)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Broker:
    directory: Path
    name: str = "broker"
    port: int = 0
    bridge_to: int | None = None  # port of a central broker to bridge to
    bridge_topics: tuple[str, ...] = ("camera-service/# both 1", "homeassistant/# out 1")
    users: dict[str, str] = field(default_factory=dict)  # user → password; none: anonymous
    tls: tuple[Path, Path, Path] | None = None  # ca, cert, key
    require_client_cert: bool = False  # with tls: clients need a certificate of that CA
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    def _write_config(self) -> Path:
        lines = [
            f"listener {self.port} 127.0.0.1",
            "persistence false",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        if os.geteuid() == 0:  # as root Mosquitto drops to its own user, which cannot read tmp
            lines.append("user root")
        if self.users:
            passwd = self.directory / f"{self.name}.passwd"
            passwd.write_text("")
            for user, password in self.users.items():
                subprocess.run(
                    ["mosquitto_passwd", "-b", str(passwd), user, password],
                    check=True,
                    capture_output=True,
                    timeout=10,
                )
            lines += ["allow_anonymous false", f"password_file {passwd}"]
        else:
            lines.append("allow_anonymous true")
        if self.tls is not None:
            ca, cert, key = self.tls
            lines += [f"cafile {ca}", f"certfile {cert}", f"keyfile {key}"]
            if self.require_client_cert:
                lines += ["require_certificate true"]
        if self.bridge_to is not None:
            lines += [
                f"connection {self.name}-to-central",
                f"address 127.0.0.1:{self.bridge_to}",
                *(f"topic {topic}" for topic in self.bridge_topics),
                "cleansession true",
                "restart_timeout 1",
                "bridge_protocol_version mqttv311",
            ]
        conf = self.directory / f"{self.name}.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    async def start(self, timeout: float = 10.0) -> None:
        if not self.port:
            self.port = free_port()
        conf = self._write_config()
        self.proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once, nothing blocks
            [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:  # bounded wait until it accepts connections
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"mosquitto exited: {err}")
            try:
                _reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return
            except OSError:
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()
        self.proc = None


@contextlib.asynccontextmanager
async def broker(directory: Path, **kwargs: Any) -> AsyncIterator[Broker]:
    require_mosquitto()
    instance = Broker(directory, **kwargs)
    await instance.start()
    try:
        yield instance
    finally:
        instance.stop()


class Watcher:
    """Subscribes to a filter and keeps the last payload of every topic (retained too)."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.last: dict[str, bytes] = {}
        self.history: list[tuple[str, bytes]] = []
        self._changed = asyncio.Condition()

    async def _pump(self) -> None:
        async for message in self.client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else b""
            async with self._changed:
                self.last[message.topic.value] = payload
                self.history.append((message.topic.value, payload))
                self._changed.notify_all()

    async def wait_for(
        self, predicate: Callable[[Watcher], bool], timeout: float = 15.0, what: str = ""
    ) -> None:
        async def check() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: predicate(self))

        try:
            await asyncio.wait_for(check(), timeout)
        except TimeoutError:
            topics = sorted(self.last)
            raise AssertionError(f"not seen within {timeout} s: {what}; topics: {topics}") from None

    async def wait_json(
        self, topic: str, predicate: Callable[[Any], bool], timeout: float = 15.0
    ) -> Any:
        def ok(w: Watcher) -> bool:
            raw = w.last.get(topic)
            if not raw:
                return False
            return predicate(json.loads(raw))

        await self.wait_for(ok, timeout, topic)
        return json.loads(self.last[topic])


@contextlib.asynccontextmanager
async def watching(
    url_port: int, topic_filter: str = "#", **client_args: Any
) -> AsyncIterator[Watcher]:
    async with aiomqtt.Client("127.0.0.1", url_port, **client_args) as client:
        await client.subscribe(topic_filter, qos=1)
        watcher = Watcher(client)
        task = asyncio.create_task(watcher._pump())
        try:
            yield watcher
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task


def make_tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 (openssl), as (ca, cert, key)."""
    ca_key, ca = directory / "ca.key", directory / "ca.pem"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    ext = directory / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    steps = [
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key),
         "-out", str(ca), "-days", "2", "-subj", "/CN=test-ca"],
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
         str(csr), "-subj", "/CN=127.0.0.1"],
        ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
         "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext)],
    ]  # fmt: skip
    for step in steps:
        subprocess.run(step, check=True, capture_output=True, timeout=60)
    return ca, cert, key


def make_client_cert(directory: Path, name: str = "client") -> tuple[Path, Path]:
    """A client certificate signed by :func:`make_tls_files`' CA, as (cert, key)."""
    ca_key, ca = directory / "ca.key", directory / "ca.pem"
    key, csr, cert = directory / f"{name}.key", directory / f"{name}.csr", directory / f"{name}.pem"
    steps = [
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
         str(csr), "-subj", f"/CN={name}"],
        ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
         "-CAcreateserial", "-out", str(cert), "-days", "2"],
    ]  # fmt: skip
    for step in steps:
        subprocess.run(step, check=True, capture_output=True, timeout=60)
    return cert, key
