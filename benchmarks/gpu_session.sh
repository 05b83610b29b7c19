#!/usr/bin/env bash
# What ran on the lent GPU machine (Python 3.12 with PyTorch's CUDA 13 libraries, CPU-only
# onnxruntime, no network): install the carried onnxruntime-gpu wheel (joined from parts) and
# the missing cp312 wheels, then (1) serve with FACE_DEVICE=cuda and record /v1/info/server,
# (2) run the benchmark harness with the CUDA provider. Results land in $OUT.
set -uo pipefail
export PYTHONUNBUFFERED=1 BENTOML_DO_NOT_TRACK=True BENTOML_HOME=/tmp/bentoml_home
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
wheel=/tmp/onnxruntime_gpu-1.31.1-cp312-cp312-manylinux_2_28_x86_64.whl
cat .device/p1/ort.part .device/p2/ort.part .device/p3/ort.part .device/p4/ort.part > "$wheel"
sha256sum "$wheel" | tee -a "$OUT/gpu.txt"
python3 -m pip uninstall -y -q onnxruntime
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    .device/whl/*.whl "$wheel" || exit 1
export PYTHONPATH=/tmp/site:$PWD
python3 -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())" \
    | tee -a "$OUT/gpu.txt"
python3 -m face_api.packs import .device/models/buffalo_sc_int8 >> "$OUT/gpu.txt" 2>&1
export FACE_API_KEYS=gpu-key FACE_DEVICE=cuda
python3 -m bentoml serve service:FaceAPI --host 127.0.0.1 --port 3000 > "$OUT/serve.log" 2>&1 &
for _ in $(seq 1 120); do curl -sf 127.0.0.1:3000/v1/health >/dev/null && break; sleep 1; done
curl -s 127.0.0.1:3000/v1/info/server | tee "$OUT/info_server.json"; echo
curl -s 127.0.0.1:3000/v1/info/model/buffalo_sc_int8 > "$OUT/info_model.json"
curl -s -H "x-api-key: gpu-key" -F image=@.device/testdata/identities/yuke_100.jpg \
    127.0.0.1:3000/v1/file/feature | head -c 300; echo
kill %1; wait
timeout 420 python3 -m benchmarks.run --device cuda --repeats "${REPEATS:-3}" \
    --pack-dir .device/models/buffalo_sc_int8 --photos-dir .device/testdata \
    --out "$OUT/bench_gpu.md" > "$OUT/bench.log" 2>&1
tail -40 "$OUT/bench.log"
