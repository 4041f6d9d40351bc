#!/usr/bin/env bash
# Installs everything (scripts/install.sh), then runs `p2pnode testnet ...` (default: up -n 4).
#   ./scripts/testnet.sh up        start a 4-validator local network with a text subnet market
#   ./scripts/testnet.sh status    per-peer heights and finality
#   ./scripts/testnet.sh down      stop it
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
if [ "$#" -eq 0 ]; then set -- up; fi
exec .venv/bin/p2pnode testnet "$@"
