"""Sections of the media tools: `mediamtx` (streaming server) and `ffmpeg`."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, field_validator

from camera_service.config.base import Port, Seconds, Section


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
