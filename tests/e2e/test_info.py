"""GET /v1/health and /v1/info/*: no key needed, real values."""

from __future__ import annotations

import httpx

from face_api.inference.packs import DEFAULT_MATCH_THRESHOLD, sha256_of
from tests.paths import DEFAULT_PACK, DEFAULT_PACK_DIR, MEASURED_RECOGNIZER


def get(server, path: str) -> dict:
    response = httpx.get(f"{server.url}{path}")  # no key
    assert response.status_code == 200, response.text
    return response.json()


def test_health(server):
    assert get(server, "/v1/health") == {"status": "ok"}


def test_server_info(server):
    import bentoml
    import insightface
    import onnxruntime

    from face_api import __version__

    info = get(server, "/v1/info/server")
    assert info["version"] == __version__
    assert info["bentoml"] == bentoml.__version__
    assert info["insightface"] == insightface.__version__
    assert info["onnxruntime"] == onnxruntime.__version__
    assert info["device"] == "cpu"  # this machine has no GPU
    assert info["providers"] == ["CPUExecutionProvider", "OpenVINO CPU (f32)"]


def test_model_names(server):
    assert get(server, "/v1/info/model") == {"model_name": DEFAULT_PACK, "models": [DEFAULT_PACK]}


def test_model_detail(server):
    detail = get(server, f"/v1/info/model/{DEFAULT_PACK}")
    expected_files = {p.name: sha256_of(p) for p in DEFAULT_PACK_DIR.glob("*.onnx")}
    assert {f["name"]: f["sha256"] for f in detail["files"]} == expected_files
    assert detail["detector"]["input_size"] == [640, 640]
    assert detail["detector"]["score_threshold"] == 0.5
    detector_file = "det_500m.onnx"  # both packs the tests serve: buffalo_sc and its int8 twin
    recognizer = next(p.name for p in DEFAULT_PACK_DIR.glob("*.onnx") if p.name != detector_file)
    assert detail["recognizer"] == {
        "file": recognizer,
        "input_size": [112, 112],
        "embedding_size": 512,
        "runtime": "OpenVINO CPU (f32)",
    }
    if (
        recognizer == MEASURED_RECOGNIZER
    ):  # measured on the identities (face_api/inference/packs.py)
        assert 0.224 < detail["match_threshold"] < 0.375
        assert "identities" in detail["match_threshold_measured"]
    else:
        assert detail["match_threshold"] == DEFAULT_MATCH_THRESHOLD[0]
        assert "not measured" in detail["match_threshold_measured"]
    assert detail["providers"] == ["CPUExecutionProvider", "OpenVINO CPU (f32)"]
    text = str(detail)
    assert "/" not in text.replace("shared/testdata/identities", "")  # no file paths leak
