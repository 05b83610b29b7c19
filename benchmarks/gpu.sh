#!/usr/bin/env bash
# The whole GPU benchmark, on any machine with an NVIDIA GPU (driver 580 or newer: the `gpu`
# extra's onnxruntime-gpu uses CUDA 13). Installs the `gpu` extra into .venv, checks CUDA against
# CPU on the test photos (tests/gpu), then runs the harness on CUDA with 1, 8, 32 and 64 clients.
# Extra arguments go to the harness (e.g. --pack-dir DIR --photos-dir DIR when ../shared is not
# beside the checkout). The tables land in benchmarks/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
FACE_EXTRA=gpu ./scripts/setup.sh
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
.venv/bin/python -c 'import onnxruntime as o; print("onnxruntime", o.__version__, o.get_available_providers())'
.venv/bin/python -m pytest -m gpu tests/gpu -q
.venv/bin/python -m benchmarks.run --device cuda --out "benchmarks/results/gpu-$(date +%Y%m%d-%H%M).md" "$@"
