"""MQTT topic layout, Home Assistant discovery configs and command parsing. Pure, no I/O.

Layout under ``<prefix>`` (default ``camera-service/<node_id>``):

    availability                  online | offline (retained; offline is also the last will)
    storage                       storage state JSON (retained)
    events                        every bus event as {topic, method, params}
    cameras/<id>/state            camera object JSON (retained)
    cameras/<id>/recording        {device, recording, status, filename, ...} (retained)
    cameras/<id>/motion           ON | OFF (retained)
    cameras/<id>/image            JPEG bytes of the latest snapshot (Home Assistant camera)
    cameras/<id>/command          {"method", "params", "id"} in
    cameras/<id>/command/result   the JSON-RPC 2.0 response out
"""

from __future__ import annotations

import json
import re
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from camera_service import __version__

_NOT_ID = re.compile(r"[^A-Za-z0-9_-]+")


def default_node_id(hostname: str | None = None) -> str:
    """The host name made safe for topics and discovery ids (``[A-Za-z0-9_-]``, ≤ 64)."""
    name = (hostname if hostname is not None else socket.gethostname()).split(".")[0]
    cleaned = _NOT_ID.sub("-", name).strip("-").lower()[:64]
    return cleaned or "camera-service"


@dataclass(frozen=True)
class Topics:
    prefix: str
    discovery_prefix: str
    node_id: str

    @property
    def availability(self) -> str:
        return f"{self.prefix}/availability"

    @property
    def storage(self) -> str:
        return f"{self.prefix}/storage"

    @property
    def events(self) -> str:
        return f"{self.prefix}/events"

    @property
    def command_filter(self) -> str:
        return f"{self.prefix}/cameras/+/command"

    @property
    def ha_status(self) -> str:
        """Home Assistant's birth/will topic: ``online`` after HA starts → republish."""
        return f"{self.discovery_prefix}/status"

    def camera(self, camera_id: str, leaf: str) -> str:
        return f"{self.prefix}/cameras/{camera_id}/{leaf}"

    def command_result(self, camera_id: str) -> str:
        return f"{self.prefix}/cameras/{camera_id}/command/result"

    def camera_of_command(self, topic: str) -> str | None:
        """The camera id of a ``<prefix>/cameras/<id>/command`` topic, else None."""
        head = f"{self.prefix}/cameras/"
        if not topic.startswith(head) or not topic.endswith("/command"):
            return None
        camera_id = topic[len(head) : -len("/command")]
        return camera_id if camera_id and "/" not in camera_id else None


# --------------------------------------------------------------------------- payloads


_CREDENTIAL_QUERY = frozenset({"token", "auth_token", "api_key", "jwt"})


def _url_without_credentials(text: str) -> str:
    parts = urlsplit(text)
    if not parts.scheme or not parts.netloc:
        return text
    netloc = parts.netloc.rpartition("@")[2]
    query = parse_qsl(parts.query, keep_blank_values=True)
    kept = [(k, v) for k, v in query if k.lower() not in _CREDENTIAL_QUERY]
    if netloc == parts.netloc and len(kept) == len(query):
        return text
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(kept), parts.fragment))


def without_credentials(value: Any) -> Any:
    """``value`` (JSON data) with every URL's credentials dropped: ``token``-like query
    members (stream tokens, signed download links) and user-info. Retained MQTT messages
    outlive any token and every subscriber of the broker reads them, so MQTT payloads carry
    plain URLs; a reader signs in on its own (docs/security.md#mqtt)."""
    if isinstance(value, str):
        return _url_without_credentials(value) if "://" in value else value
    if isinstance(value, dict):
        return {k: without_credentials(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_credentials(v) for v in value]
    return value


def recording_state(device: str, info: dict[str, Any] | None) -> dict[str, Any]:
    """Payload of ``cameras/<id>/recording``: ``info`` is None when not recording."""
    if info is None:
        return {"device": device, "recording": False, "status": "STOPPED"}
    return {"device": device, "recording": True, "status": "RECORDING", **info}


def event_payload(topic: str, method: str, params: dict[str, Any]) -> bytes:
    body = {"topic": topic, "method": method, "params": without_credentials(params)}
    return json.dumps(body).encode()


# --------------------------------------------------------------------------- discovery


def _object_id(camera_id: str) -> str:
    return _NOT_ID.sub("_", camera_id)


def _command(method: str, camera_id: str, tag: str) -> str:
    return json.dumps(
        {"method": method, "params": {"device": camera_id}, "id": f"ha-{tag}"},
        separators=(",", ":"),
    )


def _origin() -> dict[str, str]:
    return {"name": "camera-service", "sw": __version__}


def node_device(topics: Topics) -> dict[str, Any]:
    return {
        "identifiers": [f"camera_service_{topics.node_id}"],
        "name": f"camera-service {topics.node_id}",
        "manufacturer": "camera-service",
        "model": "camera node",
        "sw_version": __version__,
    }


def camera_discovery(topics: Topics, camera_id: str, name: str) -> dict[str, dict[str, Any]]:
    """Discovery topic → config for one camera's entities (camera, snapshot button,
    recording switch, motion and connectivity binary sensors)."""
    obj = _object_id(camera_id)
    uid = f"{topics.node_id}_{obj}"
    dp = topics.discovery_prefix
    command = topics.camera(camera_id, "command")
    common: dict[str, Any] = {
        "availability_topic": topics.availability,
        "device": {
            "identifiers": [f"camera_service_{uid}"],
            "name": name,
            "manufacturer": "camera-service",
            "model": "camera",
            "sw_version": __version__,
            "via_device": f"camera_service_{topics.node_id}",
        },
        "origin": _origin(),
    }
    entities: dict[str, tuple[str, dict[str, Any]]] = {
        "camera": ("camera", {"name": None, "topic": topics.camera(camera_id, "image")}),
        "snapshot": (
            "button",
            {
                "name": "Snapshot",
                "icon": "mdi:camera",
                "command_topic": command,
                "payload_press": _command("take_snapshot", camera_id, "snapshot"),
            },
        ),
        "recording": (
            "switch",
            {
                "name": "Recording",
                "icon": "mdi:record-rec",
                "command_topic": command,
                "payload_on": _command("start_recording", camera_id, "record-on"),
                "payload_off": _command("stop_recording", camera_id, "record-off"),
                "state_topic": topics.camera(camera_id, "recording"),
                "value_template": "{{ 'ON' if value_json.recording else 'OFF' }}",
                "state_on": "ON",
                "state_off": "OFF",
            },
        ),
        "motion": (
            "binary_sensor",
            {
                "name": "Motion",
                "device_class": "motion",
                "state_topic": topics.camera(camera_id, "motion"),
                "payload_on": "ON",
                "payload_off": "OFF",
            },
        ),
        "connected": (
            "binary_sensor",
            {
                "name": "Connected",
                "device_class": "connectivity",
                "entity_category": "diagnostic",
                "state_topic": topics.camera(camera_id, "state"),
                "value_template": "{{ 'ON' if value_json.status == 'CONNECTED' else 'OFF' }}",
                "payload_on": "ON",
                "payload_off": "OFF",
            },
        ),
    }
    return {
        f"{dp}/{component}/{topics.node_id}/{obj}_{key}/config": {
            **common,
            **config,
            "unique_id": f"{uid}_{key}",
            "object_id": f"{uid}_{key}",
        }
        for key, (component, config) in entities.items()
    }


def storage_discovery(topics: Topics) -> dict[str, dict[str, Any]]:
    """Discovery topic → config for the node's storage sensors."""
    sensors = {
        "storage_used_percent": ("Storage used", "%", None, "usage_percentage"),
        "storage_used_bytes": ("Storage used bytes", "B", "data_size", "used_space"),
        "storage_free_bytes": ("Storage free", "B", "data_size", "available_space"),
    }
    out: dict[str, dict[str, Any]] = {}
    for key, (name, unit, device_class, member) in sensors.items():
        config: dict[str, Any] = {
            "name": name,
            "availability_topic": topics.availability,
            "state_topic": topics.storage,
            "value_template": f"{{{{ value_json.{member} }}}}",
            "unit_of_measurement": unit,
            "state_class": "measurement",
            "unique_id": f"{topics.node_id}_{key}",
            "object_id": f"{topics.node_id}_{key}",
            "device": node_device(topics),
            "origin": _origin(),
        }
        if device_class is not None:
            config["device_class"] = device_class
        out[f"{topics.discovery_prefix}/sensor/{topics.node_id}/{key}/config"] = config
    return out


# --------------------------------------------------------------------------- commands


class CommandError(Exception):
    """A command message that is not a usable request; ``code``/``data`` for the reply."""

    def __init__(self, code: int, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


@dataclass(frozen=True)
class Command:
    request: dict[str, Any]  # a JSON-RPC 2.0 request object
    id: Any
    has_id: bool


def parse_command(
    payload: bytes, camera_id: str, takes_device: bool, max_bytes: int = 65536
) -> Command:
    """A command message → a JSON-RPC request for ``camera_id``.

    ``{"method", "params"?, "id"?}`` (``"jsonrpc"`` optional). When the method takes a
    ``device`` and params have none, the topic's camera is used; a different one is an error.
    """
    if len(payload) > max_bytes:
        raise CommandError(-32600, "command too large", {"max_bytes": max_bytes})
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CommandError(-32700, "Parse error", {"detail": str(exc)}) from None
    if not isinstance(body, dict):
        raise CommandError(-32600, "Invalid Request", {"hint": "send a JSON object"})
    has_id = "id" in body
    request = {"jsonrpc": "2.0", **body}
    params = request.get("params")
    if takes_device and (params is None or isinstance(params, dict)):
        params = dict(params or {})
        given = params.setdefault("device", camera_id)
        if given != camera_id:
            raise CommandError(
                -32602,
                "Invalid params",
                {
                    "param": "device",
                    "rule": "must match the command topic",
                    "hint": f"this topic commands camera {camera_id}",
                },
            )
        request["params"] = params
    return Command(request, body.get("id"), has_id)


def error_reply(request_id: Any, error: CommandError) -> bytes:
    err: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.data is not None:
        err["data"] = error.data
    return json.dumps({"jsonrpc": "2.0", "error": err, "id": request_id}).encode()
