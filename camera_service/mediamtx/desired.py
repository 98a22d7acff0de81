"""Desired MediaMTX state, computed without I/O.

* :func:`desired_conf`: the path configuration one camera needs now, from the camera, what
  the daemon wants of it (:class:`PathIntents`) and whether a recording reads its device.
* :func:`plan_reconcile`: what to add, replace, keep and delete so that MediaMTX holds
  exactly the desired paths among those camera-service owns (executed by
  :meth:`~camera_service.mediamtx.paths.PathProvisioner.reconcile`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from camera_service.auth.daemon_credentials import Credential
from camera_service.cameras.model import Camera
from camera_service.media.encoders import SOFTWARE_ENCODER, publish_args
from camera_service.media.source import capture_source_for
from camera_service.mediamtx.models import PathConf
from camera_service.mediamtx.pathconf import (
    conf_matches,
    idle_publisher_conf,
    is_source_url,
    publisher_path_conf,
    recording_fields,
    source_path_conf,
)
from camera_service.mediamtx.publisher import DEFAULT_ENCODER_ARGS

log = logging.getLogger(__name__)


@dataclass
class PathIntents:
    """What the daemon wants of camera paths beyond their configuration."""

    #: Explicitly streamed cameras (``start_streaming``): camera id -> since when.
    streaming: dict[str, datetime] = field(default_factory=dict)
    #: Cameras MediaMTX records (``record_with: mediamtx``).
    recording: set[str] = field(default_factory=set)

    def forget(self, camera_id: str) -> None:
        self.streaming.pop(camera_id, None)
        self.recording.discard(camera_id)


@dataclass(frozen=True)
class PathSettings:
    """Daemon-wide inputs of every path configuration."""

    record_path: str
    close_after: float
    ffmpeg: str = "ffmpeg"
    #: The daemon's publisher credential, put into the publishers' URLs (stream auth on).
    publisher: Credential | None = None
    video_encoder: str = SOFTWARE_ENCODER  # from the encoder probe (media/encoders.py)


def desired_conf(
    camera: Camera, intents: PathIntents, settings: PathSettings, *, device_read: bool
) -> PathConf | None:
    """The path configuration ``camera`` needs now; None when it cannot have a path.

    Idle while the camera is away or its single-reader device is read by a recording
    (``device_read``); else published (or pulled) on demand. Streaming and recording in
    MediaMTX change only the ``record`` flag (applied without a path restart); what keeps
    their stream up is a reader the daemon holds (:mod:`.holder`).
    """
    try:
        source = capture_source_for(camera)
        if not camera.connected or (source.exclusive and device_read):
            base = idle_publisher_conf()
        elif source.input_format is None and is_source_url(source.input):
            base = source_path_conf(source.input, close_after=settings.close_after)
        else:
            # An H.264 camera is published by copy; others with the probed encoder.
            before, encoder_args = publish_args(
                source.is_h264, settings.video_encoder, source.fps, DEFAULT_ENCODER_ARGS
            )
            base = publisher_path_conf(
                [*before, *source.input_args()],
                close_after=settings.close_after,
                ffmpeg=settings.ffmpeg,
                encoder_args=encoder_args,
                credential=settings.publisher,
            )
    except ValueError as exc:
        log.warning("camera %s gets no MediaMTX path: %s", camera.id, exc)
        return None
    recording = camera.id in intents.recording and camera.connected
    return recording_fields(base, settings.record_path, enabled=recording)


def conflict_reason(name: str) -> str:
    return (
        f"MediaMTX path {name!r} exists and was not created by camera-service; it is left untouched"
    )


@dataclass
class ReconcilePlan:
    """Steps that bring MediaMTX in line with the desired paths (names sorted)."""

    add: dict[str, PathConf] = field(default_factory=dict)
    replace: dict[str, PathConf] = field(default_factory=dict)
    unchanged: list[str] = field(default_factory=list)
    #: Owned paths that exist and are no longer wanted.
    remove: list[str] = field(default_factory=list)
    #: Owned names without a path in MediaMTX and not wanted: the claim is dropped.
    release: list[str] = field(default_factory=list)
    #: Desired names held by paths camera-service does not own: name -> reason.
    conflicts: dict[str, str] = field(default_factory=dict)


def plan_reconcile(
    desired: Mapping[str, PathConf],
    current: Mapping[str, PathConf],
    owned: frozenset[str] | set[str],
) -> ReconcilePlan:
    """Compare desired with current paths; only owned paths are ever replaced or removed."""
    plan = ReconcilePlan()
    for name in sorted(set(owned) - set(desired)):
        (plan.remove if name in current else plan.release).append(name)
    for name in sorted(desired):
        conf, actual = desired[name], current.get(name)
        if actual is None:
            plan.add[name] = conf
        elif name not in owned:
            plan.conflicts[name] = conflict_reason(name)
        elif conf_matches(conf, actual):
            plan.unchanged.append(name)
        else:
            plan.replace[name] = conf
    return plan
