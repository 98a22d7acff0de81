"""Configuration: pydantic models per section, YAML file plus `CAMERA_SERVICE__SECTION__KEY` env.

Lookup order for the file: `--config`, `$CAMERA_SERVICE_CONFIG`, `/etc/camera-service/config.yaml`,
`./config.yaml`; with none found the built-in defaults apply. The environment wins over the file.
Unknown keys and bad values raise `ConfigError`, whose message names the key and the rule.

The package, by concern: `base` (what every section shares), one module per area of sections
(`network`: server, http, auth; `cameras`; `media`: mediamtx, ffmpeg; `storage`: storage,
retention; `recording`: continuous, motion; `logs`; `mqtt`), `model` (the root `Config`, its
JSON Schema and the redacted view), `loading` (file lookup, YAML, env overrides, `load_config`)
and `errors` (`ConfigError`, wording of validation errors). Import from `camera_service.config`.
"""

from __future__ import annotations

from camera_service.config.base import Percent, Port, Seconds, Section
from camera_service.config.cameras import CameraDeviceConfig, CamerasConfig, SourceConfig
from camera_service.config.errors import ConfigError, describe_validation_error
from camera_service.config.loading import (
    CONFIG_ENV_VAR,
    ENV_PREFIX,
    LOCAL_CONFIG,
    SYSTEM_CONFIG,
    build_config,
    deep_merge,
    env_overrides,
    find_config_file,
    load_config,
    read_yaml,
)
from camera_service.config.logs import LoggingConfig
from camera_service.config.media import FfmpegConfig, MediaMTXConfig
from camera_service.config.model import Config, json_schema, redacted
from camera_service.config.mqtt import MqttConfig
from camera_service.config.network import (
    AuthConfig,
    HttpConfig,
    RateLimitConfig,
    ServerConfig,
    TlsConfig,
)
from camera_service.config.recording import (
    CameraRecordingConfig,
    ContinuousConfig,
    MotionConfig,
    MotionZone,
)
from camera_service.config.storage import RetentionConfig, StorageConfig

__all__ = [
    "CONFIG_ENV_VAR",
    "ENV_PREFIX",
    "LOCAL_CONFIG",
    "SYSTEM_CONFIG",
    "AuthConfig",
    "CameraDeviceConfig",
    "CameraRecordingConfig",
    "CamerasConfig",
    "Config",
    "ConfigError",
    "ContinuousConfig",
    "FfmpegConfig",
    "HttpConfig",
    "LoggingConfig",
    "MediaMTXConfig",
    "MotionConfig",
    "MotionZone",
    "MqttConfig",
    "Percent",
    "Port",
    "RateLimitConfig",
    "RetentionConfig",
    "Seconds",
    "Section",
    "ServerConfig",
    "SourceConfig",
    "StorageConfig",
    "TlsConfig",
    "build_config",
    "deep_merge",
    "describe_validation_error",
    "env_overrides",
    "find_config_file",
    "json_schema",
    "load_config",
    "read_yaml",
    "redacted",
]
