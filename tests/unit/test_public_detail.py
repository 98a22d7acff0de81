"""FFmpeg's words reach every role (error data, recording notifications): no server paths,
no credentials."""

from __future__ import annotations

from camera_service.rpc.errors import DependencyFailed
from camera_service.rpc.methods.media import recording_event


def test_recording_error_reason_shows_no_server_path_or_credential() -> None:
    event = recording_event(
        {
            "device": "camera0",
            "status": "ERROR",
            "filename": "camera0_1.mp4",
            "duration": 3.0,
            "reason": "/var/lib/camera-service/recordings/.segments/camera0/s1.mp4: "
            "Invalid data found when processing input",
        }
    )
    assert event.topic == "recording.error"
    assert event.params["reason"] == "s1.mp4: Invalid data found when processing input"
    assert event.params["filename"] == "camera0_1.mp4"
    assert "reason" not in recording_event({"device": "c", "status": "STOPPED"}).params


def test_dependency_detail_hides_external_stream_passwords() -> None:
    error = DependencyFailed("ffmpeg", "rtsp://gate:hunter2@10.0.0.5/live: 401 Unauthorized")
    assert error.data is not None
    assert "hunter2" not in error.data["detail"]
    assert "10.0.0.5/live: 401 Unauthorized" in error.data["detail"]
