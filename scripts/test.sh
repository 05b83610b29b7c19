#!/usr/bin/env bash
# One command on a fresh machine: install, lint, run every test (unit and end-to-end).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
