"""The `mqtt` section: broker, topics, Home Assistant discovery, commands."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from camera_service.config.base import Seconds, Section


class MqttConfig(Section):
    enabled: bool = Field(False, description="Connect to an MQTT broker (state, events, commands)")
    url: str = Field(
        "mqtt://127.0.0.1:1883",
        pattern=r"^mqtts?://[^/\s]+$",
        description="Broker: mqtt://host[:port] (1883) or mqtts://host[:port] (TLS, 8883)",
    )
    username: str | None = Field(None, max_length=256, description="Broker user name")
    password: SecretStr | None = Field(None, description="Broker password")
    node_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="This node's id in topics and discovery (default: the host name)",
    )
    topic_prefix: str | None = Field(
        None,
        pattern=r"^[^#+\s]+[^#+/\s]$",
        description="Topic prefix (default camera-service/<node_id>)",
    )
    discovery_prefix: str = Field(
        "homeassistant", pattern=r"^[^#+/\s]+$", description="Home Assistant discovery prefix"
    )
    discovery: bool = Field(True, description="Publish Home Assistant discovery configs")
    commands: bool = Field(True, description="Accept JSON-RPC commands on the command topics")
    role: Literal["viewer", "operator", "admin"] = Field(
        "operator", description="Role that MQTT commands run with"
    )
    ca_file: Path | None = Field(None, description="CA bundle for mqtts:// (default: system)")
    cert_file: Path | None = Field(None, description="Client certificate (PEM) for mqtts://")
    key_file: Path | None = Field(None, description="Client key (PEM) for cert_file")
    keepalive: int = Field(30, ge=5, le=3600, description="MQTT keepalive (seconds)")
    backoff_base: Seconds = Field(1.0, description="First reconnect delay")
    backoff_max: Seconds = Field(30.0, description="Reconnect delay cap")
    queue_size: int = Field(
        1000, ge=10, le=100000, description="Outgoing messages kept while the broker is slow"
    )
    storage_interval: Seconds = Field(60.0, description="How often storage state is published")
    image_max_bytes: int = Field(
        2 * 1024 * 1024,
        ge=0,
        le=32 * 1024 * 1024,
        description="Largest snapshot published on the image topic (0: none)",
    )
