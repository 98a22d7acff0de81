"""MQTT bridge (aiomqtt): retained state, events, Home Assistant discovery, commands.

Never blocks the daemon: bus events are turned into messages synchronously and put on a
bounded queue (oldest dropped when full); one task owns the connection, reconnects with
exponential backoff and, after every (re)connect, republishes availability, discovery and the
current state of every camera, so a broker restart loses nothing that matters. Commands go
through the same dispatcher as WebSocket calls, with the role ``mqtt.role``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiomqtt

from camera_service.auth.identity import Identity
from camera_service.auth.roles import Role
from camera_service.config import MqttConfig
from camera_service.events import Event, EventBus
from camera_service.mqtt.topics import (
    CommandError,
    Topics,
    camera_discovery,
    error_reply,
    event_payload,
    parse_command,
    recording_state,
    storage_discovery,
    without_credentials,
)
from camera_service.rpc.dispatch import Dispatcher
from camera_service.rpc.session import Session, TokenBucket
from camera_service.supervise import start_supervised

log = logging.getLogger(__name__)

_QOS = 1
_MAX_INFLIGHT_COMMANDS = 8
_STOP_TIMEOUT = 3.0


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool = False


@dataclass
class BridgeDeps:
    """What the bridge reads from the rest of the node (all cheap, none blocks)."""

    cameras: Callable[[], list[dict[str, Any]]]  # camera objects
    recording: Callable[[str], dict[str, Any] | None]  # active recording summary
    storage: Callable[[], Awaitable[dict[str, Any]]]
    snapshot_path: Callable[[str], Path]
    takes_device: Callable[[str], bool]  # the method has a ``device`` param


def broker_address(url: str) -> tuple[str, int, bool]:
    """``mqtt://host[:port]`` → (host, port, tls)."""
    parts = urlsplit(url)
    tls = parts.scheme == "mqtts"
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError(f"not an MQTT broker URL: {url!r}")
    return parts.hostname, parts.port or (8883 if tls else 1883), tls


def tls_context(config: MqttConfig) -> ssl.SSLContext:
    context = ssl.create_default_context(
        cafile=str(config.ca_file) if config.ca_file is not None else None
    )
    if config.cert_file is not None:
        key = str(config.key_file) if config.key_file is not None else None
        context.load_cert_chain(str(config.cert_file), key)
    return context


class MqttBridge:
    def __init__(
        self,
        config: MqttConfig,
        node_id: str,
        bus: EventBus,
        dispatcher: Dispatcher,
        deps: BridgeDeps,
        *,
        rate: tuple[float, int] | None = None,
    ) -> None:
        self.config = config
        self.node_id = node_id
        prefix = config.topic_prefix or f"camera-service/{node_id}"
        self.topics = Topics(prefix, config.discovery_prefix, node_id)
        self.host, self.port, self.tls = broker_address(config.url)
        self._dispatcher = dispatcher
        self._deps = deps
        self._queue: deque[Message] = deque(maxlen=config.queue_size)
        self._wakeup = asyncio.Event()
        self._drained = asyncio.Event()  # set while the sender has nothing left to send
        self.connected = asyncio.Event()
        self.connections = 0
        self.dropped = 0
        self.last_error: str | None = None
        self.error_seen = asyncio.Event()
        self.published = 0
        self._announced: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._commands: set[asyncio.Task[None]] = set()
        self._client: aiomqtt.Client | None = None
        self._storage_warned = False
        bucket = TokenBucket(*rate) if rate is not None else None
        self.session = Session("mqtt", queue_size=1, bucket=bucket)
        self.session.identity = Identity(
            subject=f"mqtt:{node_id}", role=Role[config.role.upper()], method="mqtt"
        )
        bus.add_listener(self._on_event)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._task = start_supervised("mqtt", self._run)

    async def stop(self) -> None:
        """Publish ``offline`` (bounded wait), disconnect, stop the tasks."""
        client = self._client
        if client is not None and self.connected.is_set():
            with contextlib.suppress(TimeoutError):  # last state changes go out first
                await asyncio.wait_for(self._flushed(), _STOP_TIMEOUT)
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                await asyncio.wait_for(
                    client.publish(self.topics.availability, b"offline", qos=_QOS, retain=True),
                    _STOP_TIMEOUT,
                )
        tasks = [t for t in (self._task, *self._commands) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _flushed(self) -> None:
        await self._drained.wait()

    def _client_args(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "hostname": self.host,
            "port": self.port,
            "username": cfg.username,
            "password": cfg.password.get_secret_value() if cfg.password else None,
            "identifier": f"camera-service-{self.node_id}",
            "keepalive": cfg.keepalive,
            "timeout": 10.0,
            "will": aiomqtt.Will(self.topics.availability, b"offline", qos=_QOS, retain=True),
            "tls_context": tls_context(cfg) if self.tls else None,
        }

    async def _run(self) -> None:
        delay = self.config.backoff_base
        while True:
            try:
                async with aiomqtt.Client(**self._client_args()) as client:
                    self._client = client
                    await self._session(client)
            except aiomqtt.MqttError as exc:
                self.last_error = str(exc)
                self.error_seen.set()
                was_up = self.connected.is_set()
                log.log(
                    logging.WARNING if was_up else logging.INFO,
                    "MQTT broker %s:%s: %s; retrying in %.1f s",
                    self.host,
                    self.port,
                    exc,
                    delay if not was_up else self.config.backoff_base,
                )
                if was_up:
                    delay = self.config.backoff_base
            except Exception:
                log.exception("MQTT bridge failed; retrying in %.1f s", delay)
            finally:
                self._client = None
                self.connected.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.config.backoff_max)

    async def _session(self, client: aiomqtt.Client) -> None:
        topics = self.topics
        await client.publish(topics.availability, b"online", qos=_QOS, retain=True)
        if self.config.commands:
            await client.subscribe(topics.command_filter, qos=_QOS)
        if self.config.discovery:
            await client.subscribe(topics.ha_status, qos=_QOS)
        for message in await self._full_state():
            await self._publish(client, message)
        self.connections += 1
        self.connected.set()
        log.info("MQTT connected to %s:%s as %s", self.host, self.port, self.node_id)
        workers = [
            asyncio.create_task(self._sender(client)),
            asyncio.create_task(self._receiver(client)),
            asyncio.create_task(self._storage_ticker()),
        ]
        try:
            done, _ = await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # re-raise the MqttError that ended the session
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _publish(self, client: aiomqtt.Client, message: Message) -> None:
        await client.publish(message.topic, message.payload, qos=_QOS, retain=message.retain)
        self.published += 1

    async def _sender(self, client: aiomqtt.Client) -> None:
        while True:
            while self._queue:
                message = self._queue[0]
                await self._publish(client, message)
                if self._queue and self._queue[0] is message:
                    self._queue.popleft()
            self._wakeup.clear()
            self._drained.set()
            await self._wakeup.wait()

    async def _receiver(self, client: aiomqtt.Client) -> None:
        limit = asyncio.Semaphore(_MAX_INFLIGHT_COMMANDS)
        async for message in client.messages:
            topic = message.topic.value
            payload = message.payload if isinstance(message.payload, bytes) else b""
            if topic == self.topics.ha_status:
                if payload == b"online":  # Home Assistant restarted: discovery again
                    for item in await self._full_state():
                        self._enqueue(item)
                continue
            camera_id = self.topics.camera_of_command(topic)
            if camera_id is None or not self.config.commands:
                continue
            await limit.acquire()  # back-pressure: at most 8 commands run at once
            task = asyncio.create_task(self._command(camera_id, payload))
            self._commands.add(task)
            task.add_done_callback(self._commands.discard)
            task.add_done_callback(lambda _t: limit.release())

    async def _storage_ticker(self) -> None:
        while True:
            await asyncio.sleep(self.config.storage_interval)
            self._enqueue(await self._storage_message())

    # -- commands ----------------------------------------------------------------------------

    async def _command(self, camera_id: str, payload: bytes) -> None:
        reply: bytes | None
        try:
            probe = json.loads(payload) if payload[:1] == b"{" else None
            method = probe.get("method") if isinstance(probe, dict) else None
            takes_device = isinstance(method, str) and self._deps.takes_device(method)
            command = parse_command(payload, camera_id, takes_device)
        except CommandError as exc:
            reply = error_reply(None, exc)
        except ValueError as exc:
            reply = error_reply(None, CommandError(-32700, "Parse error", {"detail": str(exc)}))
        else:
            text = json.dumps(command.request)
            answer = await self._dispatcher.handle_frame(self.session, text)
            # Every subscriber of the broker reads the reply: no tokens in its URLs
            # (take_snapshot's download_url, get_camera_urls, stream URLs).
            reply = None
            if answer is not None:
                reply = json.dumps(without_credentials(json.loads(answer))).encode()
        if reply is not None:
            self._enqueue(Message(self.topics.command_result(camera_id), reply))

    # -- state -------------------------------------------------------------------------------

    def _enqueue(self, message: Message) -> None:
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1  # deque drops the oldest; retained state is republished anyway
        self._queue.append(message)
        self._drained.clear()
        self._wakeup.set()

    def _camera_messages(self, camera: dict[str, Any]) -> list[Message]:
        device = camera["device"]
        t = self.topics
        out: list[Message] = []
        if self.config.discovery and device not in self._announced:
            name = str(camera.get("name") or device)
            for topic, config in camera_discovery(t, device, name).items():
                out.append(Message(topic, json.dumps(config).encode(), retain=True))
        self._announced.add(device)
        state = without_credentials({k: v for k, v in camera.items() if k != "topic"})
        out.append(Message(t.camera(device, "state"), json.dumps(state).encode(), retain=True))
        return out

    def _forget_messages(self, device: str) -> list[Message]:
        """Empty retained payloads remove discovery configs and retained state."""
        t = self.topics
        topics = list(camera_discovery(t, device, device)) if self.config.discovery else []
        topics += [t.camera(device, leaf) for leaf in ("state", "recording", "motion")]
        self._announced.discard(device)
        return [Message(topic, b"", retain=True) for topic in topics]

    def _recording_message(self, device: str) -> Message:
        payload = recording_state(device, self._deps.recording(device))
        return Message(self.topics.camera(device, "recording"), json.dumps(payload).encode(), True)

    async def _storage_message(self) -> Message:
        info = await self._deps.storage()
        warn = bool(info.get("low_space_warning"))
        if warn and not self._storage_warned:
            self._enqueue(
                Message(self.topics.events, event_payload("storage.warning", "storage", info))
            )
        self._storage_warned = warn
        return Message(self.topics.storage, json.dumps(info).encode(), retain=True)

    async def _full_state(self) -> list[Message]:
        self._announced.clear()
        out: list[Message] = []
        if self.config.discovery:
            for topic, config in storage_discovery(self.topics).items():
                out.append(Message(topic, json.dumps(config).encode(), retain=True))
        for camera in self._deps.cameras():
            out += self._camera_messages(camera)
            out.append(self._recording_message(camera["device"]))
        try:
            out.append(await self._storage_message())
        except OSError as exc:
            log.warning("MQTT: storage state unavailable: %s", exc)
        return out

    def _on_event(self, event: Event) -> None:
        """Bus listener (synchronous, never raises into the bus)."""
        params = event.params
        device = event.device or params.get("device")
        messages: list[Message] = []
        if event.method == "camera_status_update" and isinstance(device, str):
            if params.get("forgotten"):
                messages += self._forget_messages(device)
            else:
                messages += self._camera_messages(dict(params))
        elif event.method == "recording_status_update" and isinstance(device, str):
            messages.append(self._recording_message(device))
        elif event.topic.startswith("motion.") and isinstance(device, str):
            state = b"ON" if event.topic == "motion.start" else b"OFF"
            messages.append(Message(self.topics.camera(device, "motion"), state, retain=True))
        elif event.method == "snapshot_taken" and isinstance(device, str):
            self._spawn_image(device, str(params.get("filename", "")))
        messages.append(
            Message(self.topics.events, event_payload(event.topic, event.method, params))
        )
        for message in messages:
            self._enqueue(message)

    def _spawn_image(self, device: str, filename: str) -> None:
        if self.config.image_max_bytes <= 0 or not filename.endswith(".jpg"):
            return
        task = asyncio.get_running_loop().create_task(self._image(device, filename))
        self._commands.add(task)
        task.add_done_callback(self._commands.discard)

    async def _image(self, device: str, filename: str) -> None:
        path = self._deps.snapshot_path(filename)
        limit = self.config.image_max_bytes
        try:
            data = await asyncio.to_thread(_read_bounded, path, limit)
        except OSError as exc:
            log.warning("MQTT: snapshot %s not published: %s", filename, exc)
            return
        if data is not None:
            self._enqueue(Message(self.topics.camera(device, "image"), data))


def _read_bounded(path: Path, limit: int) -> bytes | None:
    if path.stat().st_size > limit:
        return None
    return path.read_bytes()
