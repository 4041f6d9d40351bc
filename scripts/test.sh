#!/usr/bin/env bash
# Installs everything (scripts/install.sh) and runs the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
# The dashboard's browser test drives headless Chromium; install it where this runs as root with apt.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; } \
            >/dev/null 2>&1 || echo "test.sh: could not install chromium; the browser test will skip" >&2
    else
        echo "test.sh: chromium is not installed and cannot be here; the browser test will skip" >&2
    fi
fi
export P2PNODE_KDF=fast
.venv/bin/python -m pytest -q "$@"
