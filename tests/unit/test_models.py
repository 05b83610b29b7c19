"""The batched detector against insightface's own batch-1 SCRFD, on every test photo and t1.

The same faces, boxes and landmarks within 0.5 px and scores within 1e-3, whether the photos go
through in passes of 1, 3 or 8 mixed photos, and on the path CUDA takes (batches padded to
buckets, normalization inside the graph) run here on the CPU provider.
"""

from __future__ import annotations

import cv2
import insightface
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from insightface.model_zoo import model_zoo

from face_api.inference.models import BatchedDetector, with_dynamic_batch, with_uint8_bgr_input
from face_api.pipeline.faces import letterbox, to_image_coordinates
from tests.paths import CROWD, DEFAULT_PACK_DIR, IDENTITIES

DETECTOR_FILE = DEFAULT_PACK_DIR / "det_500m.onnx"
SIZE = 640


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    images = [insightface.data.get_image("t1")]
    images += [cv2.imread(str(p)) for p in CROWD + IDENTITIES]
    # Interleave crowds and single faces, so every batch below mixes them.
    return images[::2] + images[1::2]


@pytest.fixture(scope="module")
def reference() -> object:
    """insightface's SCRFD as its model zoo loads it, batch 1, at our size and threshold."""
    scrfd = model_zoo.get_model(str(DETECTOR_FILE), providers=["CPUExecutionProvider"])
    scrfd.prepare(0, input_size=(SIZE, SIZE), det_thresh=0.5)
    return scrfd


@pytest.fixture(scope="module")
def expected(reference, photos) -> list[tuple[np.ndarray, np.ndarray]]:
    return [reference.detect(image, input_size=(SIZE, SIZE)) for image in photos]


def detector(reference, max_batch: int, cuda_path: bool = False) -> BatchedDetector:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return BatchedDetector(
        reference,
        ["CPUExecutionProvider"],
        options,
        size=SIZE,
        max_batch=max_batch,
        normalize_in_graph=cuda_path,
        pad_to_buckets=cuda_path,
    )


def detect_in_passes(found_by: BatchedDetector, photos, per_pass: int) -> list[np.ndarray]:
    boxed = [letterbox(image, SIZE) for image in photos]
    found: list[np.ndarray] = []
    for start in range(0, len(boxed), per_pass):
        group = boxed[start : start + per_pass]
        rows = found_by.detect(np.stack([b.canvas for b in group]))
        found += [to_image_coordinates(r, b.scale) for r, b in zip(rows, group, strict=True)]
    return found


def assert_same_faces(found: list[np.ndarray], expected) -> None:
    assert len(found) == len(expected)
    total = 0
    for rows, (boxes, points) in zip(found, expected, strict=True):
        assert len(rows) == len(boxes)
        np.testing.assert_allclose(rows[:, :4], boxes[:, :4], atol=0.5)
        np.testing.assert_allclose(rows[:, 4], boxes[:, 4], atol=1e-3)
        np.testing.assert_allclose(rows[:, 5:].reshape(-1, 5, 2), points, atol=0.5)
        total += len(rows)
    assert total > 300  # the crowds are in there: hundreds of faces compared


def test_every_photo_is_on_the_list(photos):
    assert len(photos) == 1 + len(CROWD) + len(IDENTITIES) >= 38


@pytest.mark.parametrize("per_pass", [1, 3, 8])
def test_batched_passes_find_what_insightface_finds(reference, photos, expected, per_pass):
    found = detect_in_passes(detector(reference, max_batch=8), photos, per_pass)
    assert_same_faces(found, expected)


@pytest.mark.parametrize("per_pass", [3, 8])
def test_the_cuda_path_finds_the_same_on_cpu(reference, photos, expected, per_pass):
    # Padded to a power-of-two bucket, fed uint8 BGR, normalized by the graph itself.
    cuda_path = detector(reference, max_batch=8, cuda_path=True)
    assert cuda_path.session.get_inputs()[0].type == "tensor(uint8)"
    assert cuda_path.batch_sizes == [1, 2, 4, 8]
    assert_same_faces(detect_in_passes(cuda_path, photos, per_pass), expected)


def test_one_image_a_pass_when_max_batch_is_one(reference, photos, expected):
    found = detect_in_passes(detector(reference, max_batch=1), photos, per_pass=8)
    assert_same_faces(found, expected)


def test_batched_raw_outputs_equal_single_passes_exactly(reference, photos):
    batched = detector(reference, max_batch=8)
    canvases = np.stack([letterbox(image, SIZE).canvas for image in photos[:5]])
    together = batched.forward(canvases)
    for i in range(len(canvases)):
        alone = batched.forward(canvases[i : i + 1])
        for a, b in zip(together, alone, strict=True):
            np.testing.assert_array_equal(a[i], b[0])


def test_graph_surgery_leaves_the_layers_alone():
    original = onnx.load(str(DETECTOR_FILE))
    dynamic = with_dynamic_batch(original)
    assert dynamic.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert [n.op_type for n in dynamic.graph.node] == [n.op_type for n in original.graph.node]
    fed_uint8 = with_uint8_bgr_input(dynamic, 127.5, 128.0)
    added = [n.op_type for n in fed_uint8.graph.node[:5]]
    assert added == ["Cast", "Sub", "Mul", "Gather", "Transpose"]
    assert fed_uint8.graph.node[5:] == dynamic.graph.node
    onnx.checker.check_model(fed_uint8)


def test_a_graph_that_batches_differently_falls_back_to_single_passes(reference, monkeypatch):
    real = BatchedDetector._per_image

    def scrambled(self, output, images):  # as if rows were laid out otherwise
        return real(self, output, images)[::-1]

    monkeypatch.setattr(BatchedDetector, "_per_image", scrambled)
    assert detector(reference, max_batch=8).max_batch == 1
