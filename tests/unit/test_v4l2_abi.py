"""The Python V4L2 ABI (struct layouts, ioctl numbers, flags) against the kernel's own header.

A tiny C program is compiled against ``/usr/include/linux/videodev2.h`` (Debian's
``linux-libc-dev``) and prints sizes, member offsets and constants; each must equal what
``camera_service.cameras.v4l2_abi`` uses.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from camera_service.cameras import v4l2_abi as abi

HEADER = Path("/usr/include/linux/videodev2.h")

# (C expression, Python value)
SIZES = {
    "sizeof(struct v4l2_capability)": abi.CAPABILITY_STRUCT.size,
    "sizeof(struct v4l2_fmtdesc)": abi.FMTDESC_STRUCT.size,
    "sizeof(struct v4l2_frmsizeenum)": abi.FRMSIZE_STRUCT.size,
    "sizeof(struct v4l2_frmivalenum)": abi.FRMIVAL_STRUCT.size,
    "sizeof(struct v4l2_query_ext_ctrl)": abi.QUERY_EXT_CTRL_STRUCT.size,
    "sizeof(struct v4l2_querymenu)": abi.QUERYMENU_STRUCT.size,
    "sizeof(struct v4l2_ext_control)": abi.EXT_CONTROL_STRUCT.size,
    "sizeof(struct v4l2_ext_controls)": abi.EXT_CONTROLS_STRUCT.size,
}


def _offsets(st: struct.Struct, ctype: str, members: list[str]) -> dict[str, int]:
    """Offsets of the leading members of a struct.Struct format (one code per member)."""
    fmt = st.format
    prefix = fmt[0] if fmt[0] in "@=<>!" else ""
    codes: list[str] = []
    i = len(prefix)
    while i < len(fmt):
        j = i
        while fmt[j].isdigit():
            j += 1
        count = fmt[i:j]
        code = fmt[j]
        if code == "x":
            codes[-1:] = [codes[-1] + count + "x"] if codes else []
        elif code == "s":
            codes.append(count + "s")
        else:
            codes.extend([code] * (int(count) if count else 1))
        i = j + 1
    out: dict[str, int] = {}
    for index, member in enumerate(members):
        # with the member itself minus its size: native alignment pads before the member
        with_member = struct.calcsize(prefix + "".join(codes[: index + 1]))
        out[f"offsetof({ctype}, {member})"] = with_member - struct.calcsize(
            prefix + codes[index].rstrip("0123456789x")
        )
    return out


OFFSETS = {
    **_offsets(
        abi.QUERY_EXT_CTRL_STRUCT,
        "struct v4l2_query_ext_ctrl",
        [
            "id",
            "type",
            "name",
            "minimum",
            "maximum",
            "step",
            "default_value",
            "flags",
            "elem_size",
            "elems",
            "nr_of_dims",
            "dims",
        ],
    ),
    **_offsets(abi.QUERYMENU_STRUCT, "struct v4l2_querymenu", ["id", "index", "name", "reserved"]),
    **_offsets(
        abi.EXT_CONTROL_STRUCT, "struct v4l2_ext_control", ["id", "size", "reserved2", "value"]
    ),
    **_offsets(
        abi.EXT_CONTROLS_STRUCT,
        "struct v4l2_ext_controls",
        ["which", "count", "error_idx", "request_fd", "reserved", "controls"],
    ),
    **_offsets(
        abi.CAPABILITY_STRUCT,
        "struct v4l2_capability",
        ["driver", "card", "bus_info", "version", "capabilities", "device_caps"],
    ),
    **_offsets(
        abi.FMTDESC_STRUCT,
        "struct v4l2_fmtdesc",
        ["index", "type", "flags", "description", "pixelformat"],
    ),
    **_offsets(abi.FRMSIZE_STRUCT, "struct v4l2_frmsizeenum", ["index", "pixel_format", "type"]),
    **_offsets(
        abi.FRMIVAL_STRUCT,
        "struct v4l2_frmivalenum",
        ["index", "pixel_format", "width", "height", "type"],
    ),
}

CONSTANTS = {
    "VIDIOC_QUERYCAP": abi.VIDIOC_QUERYCAP,
    "VIDIOC_ENUM_FMT": abi.VIDIOC_ENUM_FMT,
    "VIDIOC_ENUM_FRAMESIZES": abi.VIDIOC_ENUM_FRAMESIZES,
    "VIDIOC_ENUM_FRAMEINTERVALS": abi.VIDIOC_ENUM_FRAMEINTERVALS,
    "VIDIOC_QUERYMENU": abi.VIDIOC_QUERYMENU,
    "VIDIOC_G_EXT_CTRLS": abi.VIDIOC_G_EXT_CTRLS,
    "VIDIOC_S_EXT_CTRLS": abi.VIDIOC_S_EXT_CTRLS,
    "VIDIOC_TRY_EXT_CTRLS": abi.VIDIOC_TRY_EXT_CTRLS,
    "VIDIOC_QUERY_EXT_CTRL": abi.VIDIOC_QUERY_EXT_CTRL,
    "V4L2_CAP_VIDEO_CAPTURE": abi.CAP_VIDEO_CAPTURE,
    "V4L2_CAP_VIDEO_CAPTURE_MPLANE": abi.CAP_VIDEO_CAPTURE_MPLANE,
    "V4L2_CAP_VIDEO_M2M": abi.CAP_VIDEO_M2M,
    "V4L2_CAP_META_CAPTURE": abi.CAP_META_CAPTURE,
    "V4L2_CAP_DEVICE_CAPS": abi.CAP_DEVICE_CAPS,
    "V4L2_CTRL_TYPE_INTEGER": abi.CTRL_TYPE_INTEGER,
    "V4L2_CTRL_TYPE_BOOLEAN": abi.CTRL_TYPE_BOOLEAN,
    "V4L2_CTRL_TYPE_MENU": abi.CTRL_TYPE_MENU,
    "V4L2_CTRL_TYPE_BUTTON": abi.CTRL_TYPE_BUTTON,
    "V4L2_CTRL_TYPE_INTEGER64": abi.CTRL_TYPE_INTEGER64,
    "V4L2_CTRL_TYPE_CTRL_CLASS": abi.CTRL_TYPE_CTRL_CLASS,
    "V4L2_CTRL_TYPE_STRING": abi.CTRL_TYPE_STRING,
    "V4L2_CTRL_TYPE_BITMASK": abi.CTRL_TYPE_BITMASK,
    "V4L2_CTRL_TYPE_INTEGER_MENU": abi.CTRL_TYPE_INTEGER_MENU,
    "V4L2_CTRL_FLAG_DISABLED": abi.CTRL_FLAG_DISABLED,
    "V4L2_CTRL_FLAG_GRABBED": abi.CTRL_FLAG_GRABBED,
    "V4L2_CTRL_FLAG_READ_ONLY": abi.CTRL_FLAG_READ_ONLY,
    "V4L2_CTRL_FLAG_UPDATE": abi.CTRL_FLAG_UPDATE,
    "V4L2_CTRL_FLAG_INACTIVE": abi.CTRL_FLAG_INACTIVE,
    "V4L2_CTRL_FLAG_SLIDER": abi.CTRL_FLAG_SLIDER,
    "V4L2_CTRL_FLAG_WRITE_ONLY": abi.CTRL_FLAG_WRITE_ONLY,
    "V4L2_CTRL_FLAG_VOLATILE": abi.CTRL_FLAG_VOLATILE,
    "V4L2_CTRL_FLAG_HAS_PAYLOAD": abi.CTRL_FLAG_HAS_PAYLOAD,
    "V4L2_CTRL_FLAG_EXECUTE_ON_WRITE": abi.CTRL_FLAG_EXECUTE_ON_WRITE,
    "V4L2_CTRL_FLAG_MODIFY_LAYOUT": abi.CTRL_FLAG_MODIFY_LAYOUT,
    "V4L2_CTRL_FLAG_NEXT_CTRL": abi.CTRL_FLAG_NEXT_CTRL,
    "V4L2_CTRL_FLAG_NEXT_COMPOUND": abi.CTRL_FLAG_NEXT_COMPOUND,
    "V4L2_CTRL_WHICH_CUR_VAL": abi.CTRL_WHICH_CUR_VAL,
    "V4L2_CTRL_WHICH_DEF_VAL": abi.CTRL_WHICH_DEF_VAL,
    "V4L2_CID_USER_CLASS": abi.CID_USER_CLASS,
    "V4L2_CID_BACKLIGHT_COMPENSATION": abi.CID_BACKLIGHT_COMPENSATION,
    "V4L2_CID_PRIVACY": abi.CID_PRIVACY,
    "V4L2_CID_BRIGHTNESS": abi.CID_BRIGHTNESS,
    "V4L2_CID_CONTRAST": abi.CID_CONTRAST,
    "V4L2_CID_SATURATION": abi.CID_SATURATION,
    "V4L2_CID_AUTO_WHITE_BALANCE": abi.CID_AUTO_WHITE_BALANCE,
    "V4L2_CID_GAIN": abi.CID_GAIN,
    "V4L2_CID_POWER_LINE_FREQUENCY": abi.CID_POWER_LINE_FREQUENCY,
    "V4L2_CID_WHITE_BALANCE_TEMPERATURE": abi.CID_WHITE_BALANCE_TEMPERATURE,
    "V4L2_CID_SHARPNESS": abi.CID_SHARPNESS,
    "V4L2_CID_CAMERA_CLASS": abi.CID_CAMERA_CLASS,
    "V4L2_CID_EXPOSURE_AUTO": abi.CID_EXPOSURE_AUTO,
    "V4L2_CID_EXPOSURE_ABSOLUTE": abi.CID_EXPOSURE_ABSOLUTE,
    "V4L2_CID_EXPOSURE_AUTO_PRIORITY": abi.CID_EXPOSURE_AUTO_PRIORITY,
    "V4L2_CID_PAN_ABSOLUTE": abi.CID_PAN_ABSOLUTE,
    "V4L2_CID_PAN_RESET": abi.CID_PAN_RESET,
    "V4L2_CID_FOCUS_ABSOLUTE": abi.CID_FOCUS_ABSOLUTE,
    "V4L2_CID_FOCUS_AUTO": abi.CID_FOCUS_AUTO,
    "V4L2_CID_ZOOM_ABSOLUTE": abi.CID_ZOOM_ABSOLUTE,
    "V4L2_BUF_TYPE_VIDEO_CAPTURE": abi.BUF_TYPE_VIDEO_CAPTURE,
    "V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE": abi.BUF_TYPE_VIDEO_CAPTURE_MPLANE,
    "V4L2_FRMSIZE_TYPE_DISCRETE": abi.FRMSIZE_TYPE_DISCRETE,
    "V4L2_FRMSIZE_TYPE_STEPWISE": abi.FRMSIZE_TYPE_STEPWISE,
    "V4L2_FRMIVAL_TYPE_DISCRETE": abi.FRMIVAL_TYPE_DISCRETE,
    "V4L2_FRMIVAL_TYPE_CONTINUOUS": abi.FRMIVAL_TYPE_CONTINUOUS,
}

PROGRAM = """
#include <stddef.h>
#include <sys/time.h>
#include <stdio.h>
#include <linux/videodev2.h>
int main(void) {
%s
    return 0;
}
"""


@pytest.fixture(scope="module")
def kernel_values(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    compiler = shutil.which("cc") or shutil.which("gcc")
    assert compiler is not None, "a C compiler is needed (scripts/setup.sh installs gcc)"
    assert HEADER.exists(), "linux/videodev2.h is missing (apt-get install linux-libc-dev)"
    lines = [
        f'    printf("%s\\t%llu\\n", "{expr}", (unsigned long long)({expr}));'
        for expr in [*SIZES, *OFFSETS, *CONSTANTS]
    ]
    work = tmp_path_factory.mktemp("abi")
    source = work / "abi.c"
    source.write_text(PROGRAM % "\n".join(lines), encoding="utf-8")
    binary = work / "abi"
    subprocess.run(
        [compiler, "-std=gnu11", "-Wall", "-o", str(binary), str(source)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    out = subprocess.run([str(binary)], check=True, capture_output=True, text=True, timeout=10)
    values: dict[str, int] = {}
    for line in out.stdout.splitlines():
        name, _, value = line.partition("\t")
        values[name] = int(value)
    return values


@pytest.mark.parametrize("expr", list(SIZES))
def test_struct_sizes(kernel_values: dict[str, int], expr: str) -> None:
    assert SIZES[expr] == kernel_values[expr]


@pytest.mark.parametrize("expr", list(OFFSETS))
def test_member_offsets(kernel_values: dict[str, int], expr: str) -> None:
    assert OFFSETS[expr] == kernel_values[expr]


@pytest.mark.parametrize("name", list(CONSTANTS))
def test_ioctl_numbers_and_flags(kernel_values: dict[str, int], name: str) -> None:
    assert CONSTANTS[name] == kernel_values[name], hex(kernel_values[name])
