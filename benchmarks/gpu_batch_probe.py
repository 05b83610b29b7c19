"""GPU probe: recognizer time per batch size, insightface's default session vs our engine's."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from insightface.model_zoo import model_zoo

from face_api.settings import Settings
from runners.engine import FaceEngine, requested_providers, session_options

pack = Path(sys.argv[1])
rec_file = str(pack / "w600k_mbf_int8_dequant.onnx")


def timed(fn, runs=5):
    for _ in range(2):
        fn()
    t0 = time.perf_counter()
    for _ in range(runs):
        fn()
    return 1000 * (time.perf_counter() - t0) / runs


settings = Settings(device="cuda")
configs = {
    "insightface default": model_zoo.get_model(rec_file),
    "ours (options+providers)": model_zoo.get_model(
        rec_file,
        providers=requested_providers(settings, ort.get_available_providers()),
        sess_options=session_options(settings),
    ),
    "ours, HEURISTIC": model_zoo.get_model(
        rec_file,
        providers=requested_providers(
            Settings(device="cuda", cudnn_conv_algo_search="HEURISTIC"),
            ort.get_available_providers(),
        ),
    ),
    "default opts, 1 thread": model_zoo.get_model(
        rec_file, sess_options=session_options(Settings(device="cuda", intra_op_threads=1))
    ),
}
for name, model in configs.items():
    print(name, model.session.get_providers(), flush=True)
    for n in (1, 2, 8, 32, 64):
        crops = [np.random.randint(0, 255, (112, 112, 3), np.uint8) for _ in range(n)]
        blob = np.random.rand(n, 3, 112, 112).astype(np.float32)
        t_feat = timed(lambda c=crops, m=model: m.get_feat(c))
        t_run = timed(lambda b=blob, m=model: m.session.run(m.output_names, {m.input_name: b}))
        print(f"  batch {n:3d}: get_feat {t_feat:8.2f} ms  session.run {t_run:8.2f} ms", flush=True)
engine = FaceEngine(pack, settings)
for n in (1, 8, 64, 161):
    crops = np.random.randint(0, 255, (n, 112, 112, 3), np.uint8)
    print(f"engine.embed {n}: {timed(lambda c=crops: engine.embed(c)):.2f} ms", flush=True)
