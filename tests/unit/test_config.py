from __future__ import annotations

from pathlib import Path

import pytest

from camera_service.config import Config, ConfigError, build_config, env_overrides, load_config

ROOT = Path(__file__).resolve().parents[2]


def test_annotated_config_yaml_is_exactly_the_defaults() -> None:
    config, path = load_config(ROOT / "config.yaml", environ={})
    assert path == ROOT / "config.yaml"
    assert config == Config()


def test_yaml_off_means_discovery_off() -> None:
    assert build_config({"cameras": {"discovery": False}}).cameras.discovery == "off"


def test_env_values_are_json_when_they_parse() -> None:
    env = {
        "CAMERA_SERVICE__SERVER__PORT": "9002",
        "CAMERA_SERVICE__SERVER__ALLOWED_ORIGINS": '["https://a.example"]',
        "CAMERA_SERVICE__MEDIAMTX__PUBLIC_HOST": "cam.example",
        "OTHER": "ignored",
    }
    assert env_overrides(env) == {
        "server": {"port": 9002, "allowed_origins": ["https://a.example"]},
        "mediamtx": {"public_host": "cam.example"},
    }


def test_duplicate_source_ids_are_refused() -> None:
    source = {"id": "a", "input": "testsrc2", "input_format": "lavfi"}
    with pytest.raises(ConfigError, match="repeated: a"):
        build_config({"cameras": {"sources": [source, source]}})


def test_short_jwt_secret_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"auth\.jwt_secret"):
        build_config({"auth": {"jwt_secret": "short"}})


def test_mediamtx_reserved_path_names_are_not_camera_ids() -> None:
    source = {"id": "all", "input": "testsrc2", "input_format": "lavfi"}
    with pytest.raises(ConfigError, match=r"cameras\.sources\.0\.id"):
        build_config({"cameras": {"sources": [source]}})
