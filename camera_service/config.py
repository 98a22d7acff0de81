"""Configuration: pydantic models per section, YAML file plus `CAMERA_SERVICE__SECTION__KEY` env.

Lookup order for the file: `--config`, `$CAMERA_SERVICE_CONFIG`, `/etc/camera-service/config.yaml`,
`./config.yaml`; with none found the built-in defaults apply. The environment wins over the file.
Unknown keys and bad values raise `ConfigError`, whose message names the key and the rule.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from camera_service.cameras.model import CAMERA_ID_PATTERN, is_valid_camera_id

ENV_PREFIX = "CAMERA_SERVICE__"
CONFIG_ENV_VAR = "CAMERA_SERVICE_CONFIG"
SYSTEM_CONFIG = Path("/etc/camera-service/config.yaml")
LOCAL_CONFIG = Path("config.yaml")

Port = Annotated[int, Field(ge=0, le=65535, description="TCP port; 0 picks a free one")]
Percent = Annotated[float, Field(gt=0, le=100)]
Seconds = Annotated[float, Field(gt=0, le=86400 * 365)]


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key and the rule."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=True)


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


class SourceConfig(Section):
    id: str = Field(..., pattern=CAMERA_ID_PATTERN, description="Camera id")
    name: str | None = Field(None, max_length=128, description="Display name")
    input: str = Field(..., min_length=1, description="FFmpeg input, e.g. testsrc2=size=640x480")
    input_format: str | None = Field(None, description="FFmpeg -f value, e.g. lavfi, v4l2")
    exclusive: bool = Field(False, description="Single reader: never opened twice at once")
    pixel_format: str | None = Field(
        None,
        pattern=r"^[A-Z0-9]{2,4}$",
        description="H264: the input is H.264, recorded and published by copy; with a v4l2 "
        "input also the capture format (MJPG, YUYV …)",
    )

    @field_validator("id")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if not is_valid_camera_id(value):
            raise ValueError(f"{value!r} is reserved (MediaMTX path names)")
        return value


class CameraDeviceConfig(Section):
    pixel_format: str = Field(
        "auto",
        pattern=r"^(auto|[A-Z0-9]{2,4})$",
        description="auto (H264, then MJPG, raw only when nothing else fits) or a fourcc",
    )
    resolution: str | None = Field(
        None,
        pattern=r"^\d{2,5}x\d{2,5}$",
        description="Capture size WxH; default: cameras.default_resolution",
    )
    fps: int | None = Field(
        None, ge=1, le=1000, description="Frame rate; default: cameras.default_fps"
    )
    controls: dict[str, int | bool] = Field(
        default_factory=dict,
        description="V4L2 controls by snake_case name (as get_camera_controls lists), applied at "
        "plug-in and after every capture start; values set through the API win",
    )

    @field_validator("controls")
    @classmethod
    def _control_names(cls, value: dict[str, int | bool]) -> dict[str, int | bool]:
        for name in value:
            if not re.fullmatch(r"[a-z0-9_]{1,64}", name):
                raise ValueError(f"{name!r} is not a control name (snake_case)")
        return value


class CamerasConfig(Section):
    discovery: Literal["udev", "poll", "off"] = Field("udev", description="How devices are found")
    poll_interval: Seconds = Field(2.0, description="Scan interval in poll mode")
    forget_after: Seconds = Field(300.0, description="Forget a disconnected camera after this")
    probe_timeout: Seconds = Field(5.0, description="V4L2 capability probe timeout")
    probe_retries: int = Field(2, ge=0, le=10, description="Probe retries before ERROR")
    default_resolution: str = Field(
        "640x480", pattern=r"^\d{2,5}x\d{2,5}$", description="Capture size when none is probed"
    )
    default_fps: int = Field(15, ge=1, le=240, description="Frame rate when none is probed")
    sources: list[SourceConfig] = Field(default_factory=list, description="Configured cameras")
    devices: dict[str, CameraDeviceConfig] = Field(
        default_factory=dict,
        description="Per V4L2 camera id (camera0 …): capture settings and controls",
    )
    warmup_frames: int = Field(
        5,
        ge=0,
        le=120,
        description="Frames skipped by a snapshot that opens a V4L2 camera (auto-exposure settles)",
    )

    @field_validator("discovery", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `off` as false; that is what the operator meant.
        return "off" if value is False else value

    @field_validator("devices")
    @classmethod
    def _device_ids(cls, devices: dict[str, CameraDeviceConfig]) -> dict[str, CameraDeviceConfig]:
        for camera_id in devices:
            if not is_valid_camera_id(camera_id):
                raise ValueError(f"{camera_id!r} is not a camera id")
        return devices

    @field_validator("sources")
    @classmethod
    def _unique_ids(cls, sources: list[SourceConfig]) -> list[SourceConfig]:
        ids = [s.id for s in sources]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"source ids must be unique, repeated: {', '.join(duplicates)}")
        return sources


class MediaMTXConfig(Section):
    enabled: bool = Field(True, description="Use MediaMTX for streaming")
    required: bool = Field(False, description="Report UNHEALTHY (not DEGRADED) while it is down")
    api_url: str = Field("http://127.0.0.1:9997", pattern=r"^https?://", description="v3 API URL")
    public_host: str = Field("127.0.0.1", description="Host put into stream URLs")
    rtsp_port: Port = 8554
    hls_port: Port = 8888
    webrtc_port: Port = 8889
    on_demand_close_after: Seconds = Field(10.0, description="runOnDemandCloseAfter for paths")
    record_with: Literal["ffmpeg", "mediamtx"] = Field("ffmpeg", description="Who records")
    health_interval: Seconds = Field(5.0, description="/v3/info probe interval")
    backoff_base: Seconds = Field(0.5, description="First retry delay while down")
    backoff_max: Seconds = Field(4.0, description="Retry delay cap while down")
    request_timeout: Seconds = Field(3.0, description="Timeout of one API request")
    stream_auth: bool = Field(
        True,
        description="Stream URLs carry credentials and POST /mediamtx/auth decides every "
        "MediaMTX request (MediaMTX needs authMethod: http, see docs/deployment.md)",
    )
    stream_token_ttl: Seconds = Field(
        300.0, description="Lifetime of the path-scoped stream tokens in stream URLs"
    )
    auth_clients: list[str] = Field(
        default_factory=list,
        description="Addresses besides loopback allowed to call POST /mediamtx/auth "
        "(where MediaMTX runs when it is on another host)",
    )

    @field_validator("auth_clients")
    @classmethod
    def _ip_addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ValueError(f"{address!r} is not an IP address") from None
        return value


class FfmpegConfig(Section):
    binary: str = Field("ffmpeg", description="FFmpeg executable")
    ffprobe: str = Field("ffprobe", description="ffprobe executable")
    preset: str = Field("veryfast", description="libx264 preset")
    bitrate: str = Field("2M", pattern=r"^\d+[kKmM]?$", description="Video bitrate")
    profile: Literal["baseline", "main", "high"] = Field("main", description="H.264 profile")
    gop_seconds: float = Field(1.0, gt=0, le=10, description="Keyframe interval (fragment size)")
    video_encoder: str = Field(
        "auto",
        pattern=r"^(auto|libx264|h264_v4l2m2m|h264_vaapi|h264_qsv|h264_nvenc)$",
        description="H.264 encoder: auto (first working hardware encoder, else libx264) or a name",
    )
    snapshot_timeout: Seconds = Field(10.0, description="Timeout of one snapshot capture")
    start_timeout: Seconds = Field(
        10.0, description="start_recording fails (-32050) when FFmpeg wrote no frame by then"
    )
    stop_timeout: Seconds = Field(5.0, description="Grace period before SIGTERM/SIGKILL")
    max_probes: int = Field(
        4, ge=1, le=64, description="ffprobe processes at once (file info); more calls wait"
    )


class StorageConfig(Section):
    recordings_dir: Path = Field(
        Path("/var/lib/camera-service/recordings"), description="Where recordings are written"
    )
    snapshots_dir: Path = Field(
        Path("/var/lib/camera-service/snapshots"), description="Where snapshots are written"
    )
    state_dir: Path = Field(
        Path("/var/lib/camera-service/state"), description="API keys, secrets, policies"
    )
    warn_percent: Percent = Field(80.0, description="Disk usage that raises a warning")
    block_percent: Percent = Field(95.0, description="Disk usage that refuses new files")
    when_full: Literal["delete_oldest", "stop"] = Field(
        "delete_oldest",
        description="At block_percent: delete the oldest continuous segments, or stop recording",
    )

    @field_validator("block_percent")
    @classmethod
    def _block_above_warn(cls, value: float, info: Any) -> float:
        warn = info.data.get("warn_percent")
        if warn is not None and value < warn:
            raise ValueError("block_percent must be >= warn_percent")
        return value


class RetentionConfig(Section):
    enabled: bool = Field(False, description="Initial policy; set_retention_policy overrides it")
    policy_type: Literal["age", "size", "manual"] = Field(
        "manual", description="age: by max_age_days; size: by max_size_gb; manual: never"
    )
    max_age_days: float | None = Field(None, gt=0, description="Delete files older than this")
    max_size_gb: float | None = Field(
        None, gt=0, description="Delete the oldest files above this total (GB = 10^9 bytes)"
    )
    interval: Seconds = Field(3600.0, description="Cleanup loop interval")


class MotionZone(Section):
    """A rectangle in fractions of the picture (0..1 from the top-left corner)."""

    x: float = Field(..., ge=0, lt=1, description="Left edge")
    y: float = Field(..., ge=0, lt=1, description="Top edge")
    width: float = Field(..., gt=0, le=1, description="Width")
    height: float = Field(..., gt=0, le=1, description="Height")


class MotionConfig(Section):
    enabled: bool = Field(
        False, description="Detect motion alongside continuous recording (motion mode always does)"
    )
    sensitivity: int = Field(
        80, ge=1, le=100, description="Higher reacts to smaller moving areas (area > (101-s)/10 %)"
    )
    pixel_threshold: int = Field(
        24, ge=1, le=255, description="Grey-level change (0-255) that makes a pixel count as moving"
    )
    min_duration: float = Field(
        1.0, ge=0, le=60, description="Seconds of motion before an event starts"
    )
    end_after: float = Field(
        2.0, gt=0, le=300, description="Seconds without motion that end an event"
    )
    fps: float = Field(5.0, gt=0, le=15, description="Analysed frames per second")
    width: int = Field(160, ge=16, le=640, description="Width of the analysed grey picture")
    height: int = Field(120, ge=12, le=480, description="Height of the analysed grey picture")
    zones: list[MotionZone] = Field(
        default_factory=list, description="Only these areas are analysed (empty: whole picture)"
    )
    mask: list[MotionZone] = Field(
        default_factory=list, description="Areas never analysed (applied after zones)"
    )

    @model_validator(mode="after")
    def _one_datagram(self) -> MotionConfig:
        if self.width * self.height > 65507:
            raise ValueError("width x height must be at most 65507 (one UDP datagram per frame)")
        return self


class CameraRecordingConfig(Section):
    retain_days: float | None = Field(
        None, gt=0, description="Delete this camera's continuous segments older than this"
    )
    retain_gb: float | None = Field(
        None, gt=0, description="Keep at most this much of this camera's segments (10^9 bytes)"
    )
    motion: dict[str, Any] = Field(
        default_factory=dict, description="Overrides of motion.* keys for this camera"
    )


class ContinuousConfig(Section):
    segments_dir: Path | None = Field(
        None,
        description="Where continuous segments go (default: <recordings_dir>/.continuous); "
        "keep it on the recordings file system, whose usage the roll-over watches",
    )
    segment_seconds: int = Field(
        60, ge=10, le=3600, description="Default segment length of set_recording_mode"
    )
    pre_roll: float = Field(5.0, ge=0, le=300, description="Default seconds kept before motion")
    post_roll: float = Field(5.0, ge=0, le=300, description="Default seconds kept after motion")
    retain_days: float | None = Field(
        None, gt=0, description="Default retain_days of every camera's continuous segments"
    )
    retain_gb: float | None = Field(
        None, gt=0, description="Default retain_gb of every camera's continuous segments"
    )
    frame_rate: float = Field(
        1.0, ge=0.2, le=15, description="Latest-frame JPEGs per second (snapshots, MJPEG)"
    )
    restart_backoff_base: Seconds = Field(1.0, description="First restart delay after a crash")
    restart_backoff_max: Seconds = Field(30.0, description="Restart delay cap")
    max_events: int = Field(
        10000, ge=10, le=1000000, description="Motion events kept in the event log"
    )
    cameras: dict[str, CameraRecordingConfig] = Field(
        default_factory=dict, description="Per-camera retention and motion settings, by id"
    )

    @field_validator("cameras")
    @classmethod
    def _camera_motion(
        cls, cameras: dict[str, CameraRecordingConfig]
    ) -> dict[str, CameraRecordingConfig]:
        for camera_id, entry in cameras.items():
            if not is_valid_camera_id(camera_id):
                raise ValueError(f"{camera_id!r} is not a valid camera id")
            MotionConfig.model_validate(entry.motion)
        return cameras

    def for_camera(self, camera_id: str) -> CameraRecordingConfig:
        entry = self.cameras.get(camera_id)
        return CameraRecordingConfig(
            retain_days=entry.retain_days if entry and entry.retain_days else self.retain_days,
            retain_gb=entry.retain_gb if entry and entry.retain_gb else self.retain_gb,
            motion=entry.motion if entry else {},
        )


class LoggingConfig(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level (SIGHUP applies a change)"
    )
    format: Literal["json", "text"] = Field("json", description="One JSON object per line, or text")

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


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


class Config(Section):
    server: ServerConfig = Field(default_factory=ServerConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    cameras: CamerasConfig = Field(default_factory=CamerasConfig)
    mediamtx: MediaMTXConfig = Field(default_factory=MediaMTXConfig)
    ffmpeg: FfmpegConfig = Field(default_factory=FfmpegConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    continuous: ContinuousConfig = Field(default_factory=ContinuousConfig)
    motion: MotionConfig = Field(default_factory=MotionConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)

    @property
    def jwt_secret_file(self) -> Path:
        return self.auth.jwt_secret_file or self.storage.state_dir / "jwt_secret"

    @property
    def api_keys_file(self) -> Path:
        return self.auth.api_keys_file or self.storage.state_dir / "api_keys.json"

    @property
    def segments_dir(self) -> Path:
        return self.continuous.segments_dir or self.storage.recordings_dir / ".continuous"

    def motion_for(self, camera_id: str) -> MotionConfig:
        """motion.* with the camera's overrides from continuous.cameras.<id>.motion."""
        entry = self.continuous.cameras.get(camera_id)
        if entry is None or not entry.motion:
            return self.motion
        return MotionConfig.model_validate({**self.motion.model_dump(), **entry.motion})


def find_config_file(explicit: str | Path | None, environ: Mapping[str, str]) -> Path | None:
    """The first config file of the lookup order that applies; an explicit path must exist."""
    if explicit:
        return Path(explicit)
    if environ.get(CONFIG_ENV_VAR):
        return Path(environ[CONFIG_ENV_VAR])
    for candidate in (SYSTEM_CONFIG, LOCAL_CONFIG):
        if candidate.is_file():
            return candidate
    return None


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections at the top level")
    return data


def _parse_env_value(raw: str) -> Any:
    """JSON when it parses (numbers, booleans, lists, objects), the raw string otherwise."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Nested dict from `CAMERA_SERVICE__SECTION__KEY[__SUBKEY]` variables."""
    result: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        keys = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        if not all(keys):
            raise ConfigError(f"environment variable {name}: empty key segment")
        node = result
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"environment variable {name}: {key} is not a section")
            node = child
        node[keys[-1]] = _parse_env_value(raw)
    return result


def deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


_RULE_HINTS = {"extra_forbidden": "unknown key"}


def describe_validation_error(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(root)"
        rule = _RULE_HINTS.get(item["type"], item["msg"])
        shown = "" if item["type"] == "extra_forbidden" else f" (got {item.get('input')!r})"
        lines.append(f"{key}: {rule}{shown}")
    return "invalid configuration: " + "; ".join(lines)


def build_config(data: Mapping[str, Any]) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


def load_config(
    explicit: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> tuple[Config, Path | None]:
    """Load the effective configuration and the file it came from (None: defaults only)."""
    environ = os.environ if environ is None else environ
    path = find_config_file(explicit, environ)
    data = read_yaml(path) if path else {}
    data = deep_merge(data, env_overrides(environ))
    if overrides:
        data = deep_merge(data, overrides)
    return build_config(data), path


def json_schema() -> dict[str, Any]:
    return Config.model_json_schema()


_SECRET_KEYS = re.compile(r"secret|token|password|metrics_auth", re.IGNORECASE)


def redacted(config: Config) -> dict[str, Any]:
    """The effective configuration as plain data with secrets masked."""

    def mask(node: Any, key: str = "") -> Any:
        if isinstance(node, dict):
            return {k: mask(v, k) for k, v in node.items()}
        if isinstance(node, list):
            return [mask(v) for v in node]
        if key and _SECRET_KEYS.search(key) and node is not None and not key.endswith("_file"):
            return "********"
        return node

    result: dict[str, Any] = mask(config.model_dump(mode="json"))
    return result
