#!/usr/bin/env bash
# Installs everything into .venv from the project's own files (pyproject.toml + uv.lock).
# FACE_EXTRA=gpu installs onnxruntime-gpu (with CUDA/cuDNN wheels) instead of the CPU runtime.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v uv >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check "uv>=0.9"
fi
uv sync --frozen --extra "${FACE_EXTRA:-cpu}" --group dev --quiet
