"""Camera tuning: controls, capture settings and the H.264 encoder choice (API §8.1), built
from the config for the composition root (``app.py`` owns the instance and its lifecycle)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import replace

from camera_service.cameras.capture_settings import CaptureSettingsService
from camera_service.cameras.controls import V4L2IO, ControlService
from camera_service.cameras.registry import CameraRegistry
from camera_service.cameras.state_store import CameraStateStore
from camera_service.config import Config
from camera_service.events import Event
from camera_service.media.capture import CaptureRequest
from camera_service.media.encoders import EncoderReport, probe_encoders, supervised
from camera_service.media.ffmpeg import ProcessSupervisor
from camera_service.media.nvr import NvrManager
from camera_service.media.recordings import RecordingManager
from camera_service.mediamtx.service import MediaMTXService

log = logging.getLogger(__name__)


class CameraTuning:
    def __init__(
        self,
        config: Config,
        cameras: CameraRegistry,
        supervisor: ProcessSupervisor,
        recordings: RecordingManager,
        mediamtx: MediaMTXService,
        publish: Callable[[Event], object],
        io: V4L2IO | None = None,
        nvr: NvrManager | None = None,
    ) -> None:
        cams, ffmpeg = config.cameras, config.ffmpeg
        self._ffmpeg = ffmpeg.binary
        self._recordings = recordings
        self._nvr = nvr
        self._supervisor = supervisor
        self._mediamtx = mediamtx
        self.state = CameraStateStore(config.storage.state_dir)
        self.encoders = EncoderReport(requested=ffmpeg.video_encoder)
        if ffmpeg.video_encoder != "auto":
            self.use_encoder(ffmpeg.video_encoder)
        self.settings = CaptureSettingsService(
            cameras,
            self.state,
            configured={
                cid: CaptureRequest(d.pixel_format, d.resolution, d.fps)
                for cid, d in cams.devices.items()
            },
            default_resolution=cams.default_resolution,
            default_fps=cams.default_fps,
            busy=self._busy,
            encoder=lambda: self.encoders.selected,
        )
        self.controls = ControlService(
            cameras,
            self.state,
            publish,
            configured={cid: d.controls for cid, d in cams.devices.items() if d.controls},
            io=io,
        )
        self.controls.attach(supervisor)
        mediamtx.stream_ready_listeners.append(self.controls.stream_started)
        self.probed = asyncio.Event()  # set once the encoder probe has reported
        self._probe_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Probe the encoders in the background (start-up is not delayed by it)."""
        self._probe_task = asyncio.create_task(self.probe_encoders(), name="encoder-probe")

    def _busy(self, camera_id: str) -> str | None:
        """Capture settings cannot change while the camera records (manual or continuous)."""
        if self._recordings.active(camera_id):
            return "RECORDING"
        if self._nvr is not None and self._nvr.is_active(camera_id):
            return "RECORDING"
        return None

    def use_encoder(self, name: str) -> None:
        self.encoders.selected = name
        self._recordings.set_video_encoder(name)
        if self._nvr is not None:  # continuous recording: recorders started from now on
            env = self._nvr.env
            self._nvr.env = replace(env, encoder=replace(env.encoder, codec=name))
        self._mediamtx.settings = replace(self._mediamtx.settings, video_encoder=name)

    async def probe_encoders(self) -> None:
        """Test-encode with the hardware encoders (start-up, in the background)."""
        # A configured encoder is used as is: no test encode at start (a failing one shows in
        # the recordings' errors); auto probes.
        report = await probe_encoders(
            self._ffmpeg,
            self.encoders.requested,
            supervised(self._supervisor),
            test_requested=False,
        )
        changed = report.selected != self.encoders.selected
        self.encoders = report
        self.use_encoder(report.selected)
        self.probed.set()
        log.info("H.264 encoder: %s", report.reason, extra={"encoders": report.public_dict()})
        if changed and self._mediamtx.enabled:
            with contextlib.suppress(Exception):
                await self._mediamtx.reconcile()

    def capabilities(self) -> list[str]:
        return [
            "camera-controls",
            "capture-settings",
            "h264-copy",
            f"video-encoder:{self.encoders.selected}",
            *(f"h264-encoder:{name}" for name in self.encoders.available),
        ]

    async def close(self) -> None:
        if self._probe_task is not None:
            self._probe_task.cancel()
            await asyncio.gather(self._probe_task, return_exceptions=True)
        await self.controls.close()
