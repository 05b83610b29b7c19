"""The model engine in process: device choice, providers, batching, thread settings."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from face_api.inference.engine import (
    CPU,
    CUDA,
    DeviceUnavailableError,
    FaceEngine,
    ModelPackError,
    requested_providers,
    session_options,
)
from face_api.ops.settings import Settings
from tests.paths import DEFAULT_PACK_DIR

SPIN = "session.intra_op.allow_spinning"


def test_cpu_device_asks_for_cpu_only():
    assert requested_providers(Settings(device="cpu"), [CUDA, CPU]) == [CPU]


def test_cuda_device_without_cuda_refuses_naming_the_cause():
    with pytest.raises(DeviceUnavailableError, match="CUDAExecutionProvider.*onnxruntime-gpu"):
        requested_providers(Settings(device="cuda"), [CPU])


def test_auto_without_cuda_falls_back_loudly(caplog):
    with caplog.at_level(logging.WARNING, logger="face_api.runner"):
        assert requested_providers(Settings(device="auto"), [CPU]) == [CPU]
    assert "falling back to CPU" in caplog.text


def test_cuda_provider_gets_the_settings_options():
    settings = Settings(device="auto", cuda_device_id=1, cudnn_conv_algo_search="EXHAUSTIVE")
    assert requested_providers(settings, [CUDA, CPU]) == [
        (CUDA, {"device_id": 1, "cudnn_conv_algo_search": "EXHAUSTIVE"}),
        CPU,
    ]


def test_batch_buckets_are_powers_of_two_up_to_the_largest():
    from face_api.inference.buckets import batch_buckets, bucket_for

    assert batch_buckets(64) == [1, 2, 4, 8, 16, 32, 64]
    assert batch_buckets(48) == [1, 2, 4, 8, 16, 32, 48]
    assert [bucket_for(n, 64) for n in (1, 3, 9, 33, 64)] == [1, 4, 16, 64, 64]


def test_a_batch_is_padded_with_zero_rows_up_to_its_bucket():
    from face_api.inference.buckets import padded_to_bucket

    batch = np.full((3, 2, 2), 7, np.uint8)
    padded = padded_to_bucket(batch, 64)
    assert padded.shape == (4, 2, 2) and padded.dtype == np.uint8
    np.testing.assert_array_equal(padded[:3], batch)
    assert not padded[3].any()
    four = np.ones((4, 2), np.uint8)
    assert padded_to_bucket(four, 64) is four  # a bucket size already: not copied


def test_padded_batches_give_the_same_embeddings(engine, monkeypatch):
    rng = np.random.default_rng(1)
    crops = rng.integers(0, 255, (5, 112, 112, 3), dtype=np.uint8)
    plain = engine.embed(crops)
    monkeypatch.setattr(engine.recognizer, "pads_batches", True)
    np.testing.assert_allclose(engine.embed(crops), plain, atol=1e-5)


def test_session_threads_follow_the_setting():
    assert session_options(Settings(intra_op_threads=3)).intra_op_num_threads == 3
    cuda = session_options(Settings(ort_spinning=True), cuda=True)
    assert cuda.get_session_config_entry(SPIN) == "0"
    assert session_options(Settings()).get_session_config_entry(SPIN) == "0"  # the default
    try:
        spinning = session_options(Settings(ort_spinning=True)).get_session_config_entry(SPIN)
    except RuntimeError:  # not set at all: ONNX Runtime's default, spinning
        spinning = None
    assert spinning != "0"


@pytest.fixture(scope="module")
def engine() -> FaceEngine:
    return FaceEngine(DEFAULT_PACK_DIR, Settings(device="cpu", intra_op_threads=2))


def test_engine_reports_cpu_and_sizes(engine):
    # Detection on ONNX Runtime's CPU provider, recognition on OpenVINO (the CPU default).
    assert engine.providers == [CPU, "OpenVINO CPU (f32)"] and engine.device == "cpu"
    assert engine.recognizer.runtime == "OpenVINO CPU (f32)"
    assert engine.recognizer.crop_size == 112 and engine.recognizer.embedding_size == 512
    assert engine.detector_file == "det_500m.onnx"
    # On CPU one image a pass (a batched pass was no faster per image), normalized by OpenCV.
    assert engine.detector.max_batch == 1 and not engine.detector.normalize_in_graph
    assert engine.detector.session.get_providers() == [CPU]


def test_cuda_settings_choose_the_batched_detector_path_on_cpu_too():
    """What CUDA gets (batches padded to buckets, normalization in the graph) also runs here."""
    settings = Settings(device="cpu", detect_max_batch_size=8)
    assert settings.detect_batch_size(on_cuda=True) == 8
    assert Settings().detect_batch_size(on_cuda=True) == 32
    assert Settings().detect_batch_size(on_cuda=False) == 1


def test_detect_answers_each_canvas_its_own_faces(engine):
    import insightface

    from face_api.pipeline.faces import letterbox

    t1 = letterbox(insightface.data.get_image("t1"), 640).canvas
    blank = np.zeros_like(t1)
    out = engine.detector.detect(np.stack([blank, t1, blank]))
    assert [rows.shape for rows in out] == [(0, 15), (6, 15), (0, 15)]
    assert (out[1][:, 4] > 0.5).all()
    assert list(out[1][:, 4]) == sorted(out[1][:, 4], reverse=True)


def test_embeddings_are_unit_and_batch_invariant(engine):
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 255, (5, 112, 112, 3), dtype=np.uint8)
    batch = engine.embed(crops)
    assert batch.shape == (5, 512)
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(engine.embed(crops[2:3])[0], batch[2], atol=1e-5)
    assert engine.embed(crops[:0]).shape == (0, 512)


def test_openvino_recognizer_gives_onnxruntimes_embeddings(engine):
    """Real aligned faces: OpenVINO (f32) and ONNX Runtime agree to cosine 0.9999."""
    import insightface

    from face_api.pipeline.faces import align_faces, letterbox, to_image_coordinates

    onnxruntime_engine = FaceEngine(
        DEFAULT_PACK_DIR, Settings(device="cpu", cpu_recognizer="onnxruntime")
    )
    assert onnxruntime_engine.providers == [CPU]
    image = insightface.data.get_image("t1")
    boxed = letterbox(image, 640)
    rows = engine.detector.detect(boxed.canvas[np.newaxis])[0]
    crops = align_faces(image, to_image_coordinates(rows, boxed.scale), 112)
    assert len(crops) == 6
    cosines = (engine.embed(crops) * onnxruntime_engine.embed(crops)).sum(axis=1)
    assert cosines.min() > 0.9999


def test_a_folder_without_a_recognizer_is_refused(tmp_path):
    import shutil

    shutil.copy(DEFAULT_PACK_DIR / "det_500m.onnx", tmp_path)
    with pytest.raises(ModelPackError, match="recognizer"):
        FaceEngine(tmp_path, Settings(device="cpu"))
