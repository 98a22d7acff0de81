"""The whole configuration (`Config`: one field per section), its JSON Schema, a redacted view."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import Field

from camera_service.config.base import Section
from camera_service.config.cameras import CamerasConfig
from camera_service.config.logs import LoggingConfig
from camera_service.config.media import FfmpegConfig, MediaMTXConfig
from camera_service.config.mqtt import MqttConfig
from camera_service.config.network import AuthConfig, HttpConfig, ServerConfig
from camera_service.config.recording import ContinuousConfig, MotionConfig
from camera_service.config.storage import RetentionConfig, StorageConfig


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
