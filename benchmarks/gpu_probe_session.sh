set -uo pipefail
export PYTHONUNBUFFERED=1
wheel=/tmp/onnxruntime_gpu-1.31.1-cp312-cp312-manylinux_2_28_x86_64.whl
cat .device/p1/ort.part .device/p2/ort.part .device/p3/ort.part .device/p4/ort.part > "$wheel"
python3 -m pip uninstall -y -q onnxruntime
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .device/whl/*.whl "$wheel" || exit 1
export PYTHONPATH=/tmp/site:$PWD
timeout 150 python3 -m benchmarks.gpu_batch_probe .device/models/buffalo_sc_int8 2>&1 | grep -v -i warn | tee $OUT/probe.txt
