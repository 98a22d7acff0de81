#!/usr/bin/env bash
# Install what camera-service needs on a Debian machine: system packages with apt-get when
# missing, then a virtualenv in .venv with the package (and, with --test, the test tools).
#   scripts/setup.sh          runtime only
#   scripts/setup.sh --test   runtime + test/lint tools + browser
set -euo pipefail
cd "$(dirname "$0")/.."

with_test=false
[[ "${1:-}" == "--test" ]] && with_test=true

missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need ffmpeg ffmpeg
need ffprobe ffmpeg
need v4l2-ctl v4l-utils
python3 -c "import ensurepip" >/dev/null 2>&1 || missing+=(python3-venv)
if $with_test; then
  need systemd-analyze systemd
  need chromium chromium
  need shellcheck shellcheck
  # MQTT tests start their own Mosquitto brokers (own config files, free loopback ports).
  [[ -x /usr/sbin/mosquitto ]] || need mosquitto mosquitto
  need mosquitto_passwd mosquitto
  need openssl openssl
  # The V4L2 ABI test compiles a C program against the kernel's linux/videodev2.h.
  need cc gcc
  [[ -f /usr/include/linux/videodev2.h ]] || missing+=(linux-libc-dev)
fi

if ((${#missing[@]})); then
  sudo=""
  [[ "$(id -u)" -ne 0 ]] && sudo="sudo"
  echo "setup: installing system packages: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
fi

if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
fi
extras=""
$with_test && extras="[test]"
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras}"
echo "setup: ready (.venv)" >&2
