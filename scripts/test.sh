#!/usr/bin/env bash
# Install everything (system packages, .venv with test tools), lint, type-check and run the
# test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
.venv/bin/ruff check .
.venv/bin/mypy camera_service
exec .venv/bin/python -m pytest -q -rs -p no:cacheprovider "$@"
