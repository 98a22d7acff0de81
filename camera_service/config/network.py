"""Sections of the network front: WebSocket server (`server`), HTTP (`http`), `auth`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from camera_service.config.base import Port, Seconds, Section


class TlsConfig(Section):
    cert_file: Path | None = Field(
        None, description="PEM certificate; with key_file enables wss://"
    )
    key_file: Path | None = Field(None, description="PEM private key for cert_file")

    @property
    def enabled(self) -> bool:
        return self.cert_file is not None and self.key_file is not None


class RateLimitConfig(Section):
    enabled: bool = Field(True, description="Apply a per-connection token bucket to requests")
    per_second: float = Field(100.0, gt=0, le=100000, description="Sustained requests per second")
    burst: int = Field(200, ge=1, le=100000, description="Requests allowed in a burst")


class ServerConfig(Section):
    host: str = Field("0.0.0.0", description="Address the WebSocket server binds to")
    port: Port = Field(8002, description="WebSocket JSON-RPC port")
    path: str = Field("/ws", pattern=r"^/[A-Za-z0-9._~/-]*$", description="WebSocket path")
    max_connections: int = Field(1000, ge=1, le=100000, description="Open connections allowed")
    max_message_bytes: int = Field(
        1 << 20, ge=1024, le=64 << 20, description="Largest frame accepted; larger closes with 1009"
    )
    max_batch: int = Field(50, ge=1, le=1000, description="Largest JSON-RPC batch accepted")
    allowed_origins: list[str] = Field(
        default_factory=list, description="Origin allowlist; empty allows any origin"
    )
    tls: TlsConfig = Field(default_factory=TlsConfig)
    rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig)
    ping_interval: Seconds = Field(20.0, description="Keepalive ping interval")
    ping_timeout: Seconds = Field(20.0, description="Close a peer that does not answer a ping")
    close_timeout: Seconds = Field(5.0, description="Wait for the peer's close frame, then drop")
    send_queue_size: int = Field(
        1024, ge=8, le=100000, description="Outgoing messages queued per client before close 1013"
    )
    send_queue_bytes: int = Field(
        4 << 20,
        ge=64 << 10,
        le=1 << 30,
        description="Bytes queued for an authenticated client before close 1013",
    )
    unauthenticated_queue_bytes: int = Field(
        64 << 10,
        ge=16 << 10,
        le=1 << 30,
        description="Bytes queued for a client before it authenticates (also caps the answer "
        "to its batches)",
    )
    send_queue_total_bytes: int = Field(
        64 << 20,
        ge=1 << 20,
        le=16 << 30,
        description="Bytes queued for all clients together; the client over it is closed 1013",
    )
    max_inflight: int = Field(32, ge=1, le=1000, description="Concurrent calls per connection")
    auth_timeout: Seconds = Field(
        10.0, description="Close a connection (1008) that has not authenticated after this"
    )
    max_connections_per_address: int = Field(
        256, ge=1, le=100000, description="TCP connections per client address; more are dropped"
    )
    max_unauthenticated_per_address: int = Field(
        64, ge=1, le=100000, description="Unauthenticated connections per client address"
    )
    reserved_slots: int = Field(
        50,
        ge=0,
        le=100000,
        description="Slots of max_connections only authenticated connections may hold "
        "(unauthenticated ones always get at least one)",
    )
    event_loop: Literal["auto", "asyncio", "uvloop"] = Field(
        "auto", description="Event loop: auto takes uvloop when installed, else asyncio's own"
    )


class HttpConfig(Section):
    host: str = Field("0.0.0.0", description="Address the HTTP server binds to")
    port: Port = Field(8003, description="HTTP port: health, metrics, downloads, browser client")
    metrics_auth: SecretStr | None = Field(
        None, description="Bearer token required on /metrics; unset leaves it open"
    )
    serve_client: bool = Field(True, description="Serve the browser client at /")
    client_dir: Path | None = Field(None, description="Browser client directory (default: bundled)")
    public_url: str | None = Field(
        None, description="Base URL used in download_url (default: http://<request host>)"
    )
    download_token_ttl: Seconds = Field(600.0, description="Lifetime of signed download links")
    header_timeout: Seconds = Field(
        10.0,
        description="A request head must arrive within this of the connection (or the previous "
        "response); idle keep-alive connections close after it too",
    )
    body_timeout: Seconds = Field(30.0, description="A request body must arrive within this")
    max_connections: int = Field(
        1024,
        ge=1,
        le=100000,
        description="Open HTTP connections; at the cap the one waiting longest for its "
        "request head makes room",
    )
    max_connections_per_address: int = Field(
        16, ge=1, le=100000, description="Open HTTP connections per client address"
    )
    mjpeg_fps: int = Field(10, ge=1, le=60, description="Frame rate of live frames (MJPEG, URLs)")
    mjpeg_quality: int = Field(
        5, ge=2, le=31, description="JPEG quantizer of live frames (2 best, 31 smallest)"
    )
    mjpeg_max_viewers: int = Field(50, ge=1, le=1000, description="MJPEG viewers per camera")
    frame_keepalive: Seconds = Field(
        10.0, description="Keep a camera's live-frame reader this long after its last use"
    )
    max_frame_bytes: int = Field(
        8 * 1024 * 1024, ge=65536, le=64 * 1024 * 1024, description="Largest live JPEG frame"
    )


class AuthConfig(Section):
    jwt_secret: SecretStr | None = Field(
        None,
        min_length=32,
        description="HS256 secret (>= 32 chars); generated into the state dir when unset",
    )
    jwt_secret_file: Path | None = Field(None, description="Default: <state_dir>/jwt_secret")
    token_ttl: Seconds = Field(86400.0, description="Default lifetime of issued JWTs (seconds)")
    api_keys_file: Path | None = Field(None, description="Default: <state_dir>/api_keys.json")
    failed_auth_limit: int = Field(5, ge=1, le=10000, description="Failed logins per address")
    failed_auth_window: Seconds = Field(60.0, description="Window for failed_auth_limit")
