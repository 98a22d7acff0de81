"""What every camera's continuous recorder shares, and where it reads a camera: the types the
NVR manager is built with, apart from the recorder itself (media/continuous.py), which is
imported when the first recorder starts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from camera_service.media.ffmpeg import ProcessSupervisor
from camera_service.media.process import StopPolicy
from camera_service.media.recordings import EncoderSettings
from camera_service.media.source import CaptureSource


@dataclass(frozen=True)
class RecorderEnv:
    """What every camera's recorder shares (built by the manager)."""

    supervisor: ProcessSupervisor
    root: Path
    ffmpeg: str
    ffprobe: str
    encoder: EncoderSettings
    frames_dir: Path
    backoff_base: float
    backoff_max: float
    stop_policy: StopPolicy | None = None
    busy_timeout: float = 5.0
    start_wait: float = 10.0
    frame_rate: float = 1.0


# source of a camera: (what FFmpeg opens, whether that is the device itself), None when away
SourceFn = Callable[[str], tuple[CaptureSource, bool] | None]
