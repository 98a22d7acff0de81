"""Credentials in external stream URLs are masked in every common form (issue 10, item 11)."""

from __future__ import annotations

import pytest

from camera_service.cameras.external import mask_credentials


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("rtsp://admin:s3cr3t@10.0.0.5:554/live", "rtsp://admin:***@10.0.0.5:554/live"),
        ("rtsp://u:p@ss@cam/x", "rtsp://u:***@cam/x"),
        ("rtsp://10.0.0.5/cam?user=admin&pwd=s3cr3t", "rtsp://10.0.0.5/cam?user=admin&pwd=***"),
        ("http://cam/v.cgi?password=hunter2&res=hd", "http://cam/v.cgi?password=***&res=hd"),
        ("rtsp://cam/s1;user=admin;password=hunter2", "rtsp://cam/s1;user=admin;password=***"),
        ("rtsp://cam?passwd=x", "rtsp://cam?passwd=***"),
        ("rtsp://cam/x?PassWord=a#token=z", "rtsp://cam/x?PassWord=***#token=***"),
        ("https://cam/x?api%5Fkey=abc&channel=1", "https://cam/x?api%5Fkey=***&channel=1"),
        ("rtsp://cam/live?Auth=xyz&subtype=0", "rtsp://cam/live?Auth=***&subtype=0"),
        ("http://cam/x?access_token=t&sig=s", "http://cam/x?access_token=***&sig=***"),
        ("rtsp://user@cam/x?channel=1", "rtsp://user@cam/x?channel=1"),
        ("rtsp://cam/plain", "rtsp://cam/plain"),
    ],
)
def test_every_common_credential_form_is_masked(url: str, masked: str) -> None:
    assert mask_credentials(url) == masked


def test_camera_passwords_never_reach_a_log_line() -> None:
    from camera_service.logging import redact

    line = (
        '{"params": {"stream_url": "rtsp://admin:hunter2@10.0.0.5/live"}, '
        '"b": "rtsp://10.0.0.6/c?user=u&pwd=s3cr3t", "c": "rtsp://h/s;password=p4ss;x=1"}'
    )
    out = redact(line)
    assert "hunter2" not in out and "s3cr3t" not in out and "p4ss" not in out
    assert "rtsp://admin:[REDACTED]@10.0.0.5/live" in out
    assert "user=u&pwd=[REDACTED]" in out and ";x=1" in out
