"""Pure V4L2 decoding/interpretation, and probe_device driven through a fake kernel."""

from __future__ import annotations

import asyncio
import errno
import os
import threading

import pytest

from camera_service.cameras.model import Capabilities
from camera_service.cameras.v4l2 import (
    MAX_IOCTL_CALLS,
    V4L2Prober,
    build_capabilities,
    cap_flag_names,
    choose_default_mode,
    fps_from_intervals,
    is_capture_caps,
    probe_device,
    resolutions_from_size,
)
from camera_service.cameras.v4l2_abi import (
    CAP_META_CAPTURE,
    CAP_VIDEO_CAPTURE,
    CAP_VIDEO_CAPTURE_MPLANE,
    CAP_VIDEO_M2M,
    CAP_VIDEO_OUTPUT,
    FRMIVAL_TYPE_CONTINUOUS,
    FRMSIZE_TYPE_STEPWISE,
    VIDIOC_ENUM_FMT,
    VIDIOC_ENUM_FRAMEINTERVALS,
    VIDIOC_ENUM_FRAMESIZES,
    VIDIOC_QUERYCAP,
    DeviceVanishedError,
    FrameInterval,
    FrameSize,
    ProbeError,
    RawDeviceInfo,
    decode_capability,
    decode_frmival,
    decode_frmsize,
    encode_frmival,
    encode_frmsize,
    fourcc_to_str,
    str_to_fourcc,
)
from tests.support.fake_devices import FakeIoctl, fixture_capabilities, load_fixture, load_hex


def _probe(info_name: str, **kw: object) -> Capabilities:
    fake = FakeIoctl(load_fixture(info_name), **kw)  # type: ignore[arg-type]
    raw = probe_device("/dev/video0", ioctl=fake, open_fn=lambda _p: 3, close_fn=lambda _fd: None)
    return build_capabilities(raw)


def test_ioctl_numbers_match_videodev2_h() -> None:
    assert VIDIOC_QUERYCAP == 0x80685600
    assert VIDIOC_ENUM_FMT == 0xC0405602
    assert VIDIOC_ENUM_FRAMESIZES == 0xC02C564A
    assert VIDIOC_ENUM_FRAMEINTERVALS == 0xC034564B


def test_fourcc_roundtrip() -> None:
    assert fourcc_to_str(0x47504A4D) == "MJPG"
    assert fourcc_to_str(str_to_fourcc("YUYV")) == "YUYV"
    assert fourcc_to_str(str_to_fourcc("Y8")) == "Y8"


@pytest.mark.parametrize(
    ("caps", "expected"),
    [
        (0x04200001, True),  # UVC capture node
        (0x04A00000, False),  # UVC metadata node: META_CAPTURE only
        (0x24201000, True),  # multi-planar capture
        (0x04204000, False),  # M2M codec
        (CAP_VIDEO_CAPTURE | CAP_VIDEO_OUTPUT, False),  # old-style codec
        (CAP_VIDEO_CAPTURE | CAP_VIDEO_M2M, False),
        (CAP_META_CAPTURE, False),
        (CAP_VIDEO_CAPTURE_MPLANE, True),
        (0, False),
    ],
)
def test_capture_decision_uses_device_caps_only(caps: int, expected: bool) -> None:
    assert is_capture_caps(caps) is expected


def test_flag_names() -> None:
    assert cap_flag_names(0x04A00000) == ["EXT_PIX_FORMAT", "META_CAPTURE", "STREAMING"]


def test_c920_capture_node_capabilities() -> None:
    caps = fixture_capabilities("uvc_c920_capture")
    assert caps.is_capture
    assert (caps.card, caps.driver, caps.bus_info) == (
        "HD Pro Webcam C920",
        "uvcvideo",
        "usb-0000:00:14.0-1",
    )
    assert caps.formats == ["YUYV", "MJPG"]
    assert caps.resolutions[0] == "2304x1536"
    assert caps.resolutions[-1] == "160x90"
    assert len(caps.resolutions) == len(set(caps.resolutions)) == 12
    # union of YUYV (10, 7.5, 5) and MJPG (30 .. 5) at 1280x720; 7.5 rounds to 8
    assert caps.fps_options["1280x720"] == [30, 24, 20, 15, 10, 8, 5]
    assert caps.fps_options["2304x1536"] == [2]
    assert choose_default_mode(caps) == ("1280x720", 30)
    assert choose_default_mode(caps, "1920x1080", 60) == ("1920x1080", 30)


def test_metadata_node_is_not_a_camera() -> None:
    caps = _probe("uvc_c920_metadata")
    assert not caps.is_capture
    assert caps.formats == []  # no enumeration on non-capture nodes


def test_probe_through_fake_kernel_matches_fixture() -> None:
    for name in (
        "uvc_c920_capture",
        "usb2_generic_capture",
        "rkisp1_mplane_stepwise",
        "legacy_no_device_caps",
    ):
        assert _probe(name) == fixture_capabilities(name), name


def test_generic_camera_mjpg_yuyv() -> None:
    caps = _probe("usb2_generic_capture")
    assert caps.formats == ["MJPG", "YUYV"]
    assert caps.resolutions == ["1920x1080", "1280x720", "800x600", "640x480", "320x240"]
    assert caps.fps_options["640x480"] == [120, 60, 30, 25, 20, 15, 10, 5]
    assert choose_default_mode(caps, "1024x768", 25) == ("800x600", 20)
    assert choose_default_mode(caps, "160x120", 30) == ("320x240", 30)


def test_mplane_stepwise_sizes_and_continuous_intervals() -> None:
    caps = _probe("rkisp1_mplane_stepwise")
    assert caps.is_capture
    assert caps.formats == ["NV12", "YUYV"]
    assert caps.resolutions[0] == "4416x3312"
    assert {"3840x2160", "1920x1080", "1280x720", "640x480"} <= set(caps.resolutions)
    assert caps.fps_options["1920x1080"] == [60, 50, 30, 25, 24, 20, 15, 10, 5]


def test_m2m_codec_and_legacy_driver() -> None:
    assert not _probe("bcm2835_codec_m2m").is_capture
    legacy = _probe("legacy_no_device_caps")  # no DEVICE_CAPS flag: capabilities word is used
    assert legacy.is_capture and legacy.formats == ["JPEG"]
    assert legacy.fps_options == {"640x480": [30], "320x240": [30], "176x144": [30]}


def test_garbled_driver_output_is_sanitised() -> None:
    probed = _probe("garbled_device")  # through the struct encode/decode path
    assert probed.card == "\ufffd\ufffdCam"  # undecodable bytes replaced, controls dropped
    assert probed.formats == ["YUYV"]
    caps = fixture_capabilities("garbled_device")
    assert caps.is_capture
    assert caps.formats == ["YUYV"]  # zero and non-printable fourccs dropped, duplicate merged
    assert caps.resolutions == ["640x480", "320x240"]  # 0x0, 99999 wide and inverted range gone
    assert caps.fps_options["640x480"] == [30]  # 0/x, x/0 and 100000 fps dropped


def test_decode_raw_querycap_with_garbage() -> None:
    cap = decode_capability(load_hex("querycap_garbage_tail.hex"))
    assert cap.driver == "uvcvideo\ufffd\ufffd"
    assert cap.card == "Cam"  # bytes after the NUL ignored
    assert cap.bus_info == "usb-0000:00:14.0-2"
    assert is_capture_caps(cap.node_caps)
    with pytest.raises(ProbeError, match="malformed VIDIOC_QUERYCAP"):
        decode_capability(load_hex("querycap_truncated.hex"))


def test_frame_struct_roundtrip() -> None:
    step = FrameSize(FRMSIZE_TYPE_STEPWISE, 32, 4416, 8, 16, 3312, 8)
    assert decode_frmsize(encode_frmsize(0, 1, step)) == step
    assert decode_frmsize(encode_frmsize(0, 1, FrameSize.discrete(640, 480))) == FrameSize.discrete(
        640, 480
    )
    cont = FrameInterval(FRMIVAL_TYPE_CONTINUOUS, 1, 60, 1, 1)
    assert decode_frmival(encode_frmival(0, 1, 640, 480, cont)) == cont


def test_helpers_edge_cases() -> None:
    assert fps_from_intervals([FrameInterval.discrete(1001, 30000)]) == [30]
    assert fps_from_intervals([FrameInterval.discrete(0, 0)]) == []
    assert resolutions_from_size(FrameSize(FRMSIZE_TYPE_STEPWISE, 0, 0, 1, 0, 0, 1)) == []
    assert choose_default_mode(Capabilities(), "640x480", 15) == ("640x480", 15)


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        ({"fail": {VIDIOC_QUERYCAP: errno.ENOTTY}}, ProbeError, "not a V4L2 device"),
        ({"fail": {VIDIOC_QUERYCAP: errno.EIO}}, ProbeError, "VIDIOC_QUERYCAP failed"),
        ({"fail": {VIDIOC_ENUM_FRAMESIZES: errno.EIO}}, ProbeError, "ENUM_FRAMESIZES failed"),
        ({"vanish_after": 5}, DeviceVanishedError, "vanished"),
    ],
)
def test_probe_errors_are_reasons(
    kw: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        _probe("uvc_c920_capture", **kw)


def test_probe_open_errors() -> None:
    def vanished(_p: str) -> int:
        raise FileNotFoundError(errno.ENOENT, "No such file")

    def denied(_p: str) -> int:
        raise PermissionError(errno.EACCES, "Permission denied")

    with pytest.raises(DeviceVanishedError):
        probe_device("/dev/video9", open_fn=vanished)
    with pytest.raises(ProbeError, match="group 'video'"):
        probe_device("/dev/video9", open_fn=denied)


def test_runaway_enumeration_is_bounded() -> None:
    fake = FakeIoctl(load_fixture("uvc_c920_capture"), endless=True)
    with pytest.raises(ProbeError, match="does not end"):
        probe_device("/dev/video0", ioctl=fake, open_fn=lambda _p: 3, close_fn=lambda _f: None)
    assert len(fake.calls) == MAX_IOCTL_CALLS


def test_missing_sizes_and_intervals_ioctls_tolerated() -> None:
    caps = _probe("uvc_c920_capture", fail={VIDIOC_ENUM_FRAMEINTERVALS: errno.ENOTTY})
    assert caps.resolutions and all(v == [] for v in caps.fps_options.values())
    assert choose_default_mode(caps) == ("1280x720", 30)


def test_real_open_of_a_non_v4l2_file(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "video0")
    with open(path, "wb"):
        pass
    with pytest.raises(ProbeError, match="not a V4L2 device"):
        probe_device(path)


async def test_prober_runs_off_loop_and_survives_a_stuck_driver() -> None:
    gate = threading.Event()
    info = load_fixture("uvc_c920_capture")

    def probe_fn(path: str) -> RawDeviceInfo:
        if path.endswith("stuck"):
            gate.wait(5)
        return info

    prober = V4L2Prober(probe_fn=probe_fn, max_stuck=1)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(prober.probe("/dev/stuck"), 0.05)
    assert prober.in_flight == 1
    with pytest.raises(ProbeError, match="stuck"):
        await prober.probe("/dev/video0")
    gate.set()
    stuck = [t for t in threading.enumerate() if t.name == "v4l2-probe:/dev/stuck"]

    def join_all() -> None:
        for t in stuck:
            t.join(5)

    await asyncio.to_thread(join_all)
    assert prober.in_flight == 0
    caps = await prober.probe("/dev/video0")
    assert caps.formats == ["YUYV", "MJPG"]
