#!/usr/bin/env bash
# Install everything, then start camera-service in demo mode (synthetic test-pattern camera,
# data in a temporary directory, admin key printed). Extra arguments go to `camera-service demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/camera-service demo "$@"
