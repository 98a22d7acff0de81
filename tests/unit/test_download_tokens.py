"""Signed, file-scoped download tokens."""

from __future__ import annotations

from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from camera_service.storage.tokens import (
    TokenExpired,
    TokenInvalid,
    download_url,
    make_download_token,
    verify_download_token,
)

SECRET = b"s" * 32
NOW = 1_800_000_000.0
NAME = "camera0_2026-01-02_03-04-05.mp4"


def _token(**kw: object) -> str:
    args: dict[str, object] = {"kind": "recordings", "filename": NAME, "now": NOW} | kw
    return make_download_token(SECRET, **args)  # type: ignore[arg-type]


def test_valid_token_verifies_until_expiry() -> None:
    token = _token(ttl_s=600)
    assert verify_download_token(SECRET, token, "recordings", NAME, now=NOW) == int(NOW) + 600
    verify_download_token(SECRET, token, "recordings", NAME, now=NOW + 599)
    with pytest.raises(TokenExpired):
        verify_download_token(SECRET, token, "recordings", NAME, now=NOW + 600)


def test_token_is_url_safe() -> None:
    token = _token()
    assert all(c.isalnum() or c in "._-" for c in token)


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("recordings", "camera0_2026-01-02_03-04-06.mp4"),
        ("snapshots", NAME),
        ("recordings", NAME + "x"),
        ("recordings", ""),
    ],
)
def test_token_for_another_file_is_invalid(kind: str, name: str) -> None:
    with pytest.raises(TokenInvalid):
        verify_download_token(SECRET, _token(), kind, name, now=NOW)


def test_other_secret_is_invalid() -> None:
    with pytest.raises(TokenInvalid):
        verify_download_token(b"t" * 32, _token(), "recordings", NAME, now=NOW)


def _flip(text: str, index: int) -> str:
    swapped = "A" if text[index] != "A" else "B"
    return text[:index] + swapped + text[index + 1 :]


def test_tampered_tokens_are_invalid() -> None:
    token = _token()
    expiry, sig = token.split(".")
    later = str(int(expiry) + 10_000)
    tampered = [
        f"{later}.{sig}",  # extended lifetime
        _flip(token, len(token) - 1),
        _flip(token, len(expiry) + 1),
        token + "A",
        token[:-1],
        sig,
        "",
        ".",
        f"{expiry}.{sig}.x",
        f"-1.{sig}",
        f"{expiry} .{sig}",
    ]
    for bad in tampered:
        with pytest.raises(TokenInvalid):
            verify_download_token(SECRET, bad, "recordings", NAME, now=NOW)


def test_expired_forgery_reports_invalid_not_expired() -> None:
    _expiry, sig = _token().split(".")
    with pytest.raises(TokenInvalid):
        verify_download_token(SECRET, f"1.{sig}", "recordings", NAME, now=NOW)


def test_bad_inputs_raise_value_error() -> None:
    with pytest.raises(ValueError):
        make_download_token(b"", "recordings", NAME)
    with pytest.raises(ValueError):
        make_download_token(SECRET, "etc", NAME)
    with pytest.raises(ValueError):
        make_download_token(SECRET, "recordings", NAME, ttl_s=0)


def test_download_url_quotes_name_and_token() -> None:
    token = _token()
    url = download_url("http://box:8003/", "recordings", "a b/../c.mp4", token)
    parts = urlsplit(url)
    assert parts.path == "/files/recordings/a%20b%2F..%2Fc.mp4"
    assert unquote(parts.path.rsplit("/", 1)[1]) == "a b/../c.mp4"
    assert parse_qs(parts.query) == {"token": [token]}
    plain = download_url("http://box:8003", "snapshots", "s.jpg", token)
    assert plain == f"http://box:8003/files/snapshots/s.jpg?token={token}"
