#!/usr/bin/env bash
# The demo: set up (idempotent), then run the payment service with the SDK under load and show what the kernel saw.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm run --silent demo
