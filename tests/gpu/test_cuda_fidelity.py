"""CUDA against CPU on the test photos: the same faces, boxes within 1 px, embeddings within
cosine 0.999. Runs only where ONNX Runtime offers CUDA (the `gpu` extra on an NVIDIA machine):

    .venv/bin/python -m pytest -m gpu
"""

from __future__ import annotations

import asyncio

import insightface
import numpy as np
import onnxruntime as ort
import pytest

from face_api.inference.engine import FaceEngine
from face_api.ops.runner_hop import DetectSortType, FaceQuery
from face_api.ops.settings import Settings
from face_api.pipeline.analysis import FacePipeline
from tests.paths import CROWD, DEFAULT_PACK_DIR, IDENTITIES

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        "CUDAExecutionProvider" not in ort.get_available_providers(),
        reason="ONNX Runtime offers no CUDAExecutionProvider here",
    ),
]


def pipeline_on(device: str) -> FacePipeline:
    engine = FaceEngine(DEFAULT_PACK_DIR, Settings(device=device))
    assert engine.device == device
    return FacePipeline.in_process(engine)


def encoded_photos() -> list[bytes]:
    import cv2

    t1 = cv2.imencode(".png", insightface.data.get_image("t1"))[1].tobytes()
    return [t1] + [p.read_bytes() for p in CROWD + IDENTITIES]


def test_cuda_finds_the_faces_and_embeddings_the_cpu_finds():
    cuda, cpu = pipeline_on("cuda"), pipeline_on("cpu")
    compared = 0
    for data in encoded_photos():
        image = [("image", data)]
        on_gpu, on_cpu = (
            asyncio.run(
                p.analyze(image, FaceQuery(max_faces=1000, sort_type=DetectSortType.CONFIDENCE))
            )[0]
            for p in (cuda, cpu)
        )
        assert len(on_gpu.faces) == len(on_cpu.faces)
        if not len(on_cpu.faces):
            continue
        # Pair faces by box, not by rank: near-equal scores may swap places between devices.
        gaps = np.abs(on_cpu.faces[:, None, :4] - on_gpu.faces[None, :, :4]).max(axis=2)
        pairs = gaps.argmin(axis=1)
        assert sorted(pairs) == list(range(len(pairs))), "faces do not pair one to one"
        np.testing.assert_array_less(gaps.min(axis=1), 1.0)
        gpu_faces, gpu_embeddings = on_gpu.faces[pairs], on_gpu.embeddings[pairs]
        np.testing.assert_allclose(gpu_faces[:, 5:], on_cpu.faces[:, 5:], atol=1.0)
        cosines = (gpu_embeddings * on_cpu.embeddings).sum(axis=1)
        assert cosines.min() >= 0.999, cosines.min()
        compared += len(on_cpu.faces)
    assert compared > 300
