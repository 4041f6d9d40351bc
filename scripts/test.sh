#!/usr/bin/env bash
# Installs everything (scripts/install.sh) and runs the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
export P2PNODE_KDF=fast
.venv/bin/python -m pytest -q "$@"
