#!/usr/bin/env bash
# Creates .venv (if missing) and installs p2pnode with its dev extras, torch pinned by constraints.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c constraints.txt -e '.[dev]'
# tests/netns/test_home_nat.py builds NAT routers with nftables: install it where we can (root with
# apt); anywhere else that test skips itself and says why.
if ! command -v nft >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get install -y -qq nftables >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq nftables >/dev/null 2>&1; } \
        || echo "install.sh: could not install nftables; tests/netns/test_home_nat.py will skip" >&2
fi
