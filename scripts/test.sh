#!/usr/bin/env bash
# The test command: set up (idempotent), then run every test against the real kernel.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm test
