#!/usr/bin/env bash
# On the lent GPU machine: install the carried onnxruntime-gpu (joined parts) and cp312 wheels,
# then run one probe module with the given arguments. Output in $OUT/probe.txt.
set -uo pipefail
export PYTHONUNBUFFERED=1
wheel=/tmp/onnxruntime_gpu-1.31.1-cp312-cp312-manylinux_2_28_x86_64.whl
cat .device/p1/ort.part .device/p2/ort.part .device/p3/ort.part .device/p4/ort.part > "$wheel"
python3 -m pip uninstall -y -q onnxruntime
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    .device/whl/*.whl "$wheel" || exit 1
export PYTHONPATH=/tmp/site:$PWD
timeout 150 python3 -m "$@" 2>&1 | grep -v -i warn | tee "$OUT/probe.txt"
