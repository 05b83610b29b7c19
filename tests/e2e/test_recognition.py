"""feature / embeddings / multi-* / *-only / score / feature-score, JSON and file twins."""

from __future__ import annotations

import base64
import itertools

import cv2
import numpy as np
import pytest

from face_api.pipeline.features import decode_feature
from tests.helpers import b64
from tests.paths import CROWD, IDENTITIES, identity_of


def post(api, path: str, **body) -> dict:
    response = api.post(path, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def post_files(api, path: str, **photos) -> dict:
    files = {name: (p.name, p.read_bytes(), "image/jpeg") for name, p in photos.items()}
    response = api.post(path, files=files)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def features(api) -> dict[str, np.ndarray]:
    """/v1/feature of every identity photo, decoded."""
    out = {}
    for photo in IDENTITIES:
        body = post(api, "/v1/feature", image=b64(photo))
        assert body["face_detect"]["processed"] is True
        out[photo.name] = decode_feature(body["feature"], "feature")
    return out


def test_feature_shape_and_version(api):
    from face_api import __version__

    body = post(api, "/v1/feature", image=b64(IDENTITIES[0]))
    assert list(body) == ["version", "feature", "face_detect"]
    assert body["version"] == __version__
    assert len(body["feature"]) == 2732 and len(base64.b64decode(body["feature"])) == 2048
    assert np.linalg.norm(decode_feature(body["feature"], "f")) == pytest.approx(1.0, abs=1e-4)


def test_embeddings_equal_feature(api, features):
    photo = IDENTITIES[3]
    body = post(api, "/v1/embeddings", image=b64(photo))
    assert list(body) == ["version", "embeddings", "face_detect"]
    np.testing.assert_allclose(body["embeddings"], features[photo.name], atol=1e-6)


def test_every_same_person_pair_scores_above_every_different_person_pair(features):
    names = sorted(features)
    same, different = [], []
    for a, b in itertools.combinations(names, 2):
        score = float(features[a] @ features[b])
        (same if identity_of_name(a) == identity_of_name(b) else different).append(score)
    assert len(same) == 49 and len(different) == 528 - 49
    assert min(same) > max(different)


def identity_of_name(name: str) -> str:
    return name.split("_")[0]


def test_score_endpoint_separates_people_and_equals_feature_score(api, features):
    """/v1/score on every same-person pair and on one frame of each pair of people."""
    same_pairs = [
        (a, b) for a, b in itertools.combinations(IDENTITIES, 2) if identity_of(a) == identity_of(b)
    ]
    first_frames = {identity_of(p): p for p in reversed(IDENTITIES)}
    different_pairs = list(itertools.combinations(sorted(first_frames.values()), 2))
    scores = {}
    for a, b in same_pairs + different_pairs:
        body = post(api, "/v1/score", image1=b64(a), image2=b64(b))
        assert [d["processed"] for d in body["face_detects"]] == [True, True]
        scores[(a, b)] = body["score"]
        expected = float(features[a.name] @ features[b.name])
        assert body["score"] == pytest.approx(expected, abs=1e-4)
    assert min(scores[p] for p in same_pairs) > max(scores[p] for p in different_pairs)

    a, b = same_pairs[0]
    via_features = post(
        api,
        "/v1/feature-score",
        feature1=post(api, "/v1/feature", image=b64(a))["feature"],
        feature2=post(api, "/v1/feature", image=b64(b))["feature"],
    )
    assert via_features["score"] == pytest.approx(scores[(a, b)], abs=1e-4)
    assert list(via_features) == ["score"]


def test_file_twins_answer_as_json(api):
    a, b = IDENTITIES[0], IDENTITIES[5]
    for path in ("feature", "embeddings"):
        assert post_files(api, f"/v1/file/{path}", image=a) == post(
            api, f"/v1/{path}", image=b64(a)
        )
    assert post_files(api, "/v1/file/score", image1=a, image2=b) == post(
        api, "/v1/score", image1=b64(a), image2=b64(b)
    )


def test_multi_feature_and_multi_embeddings_on_a_crowd(api):
    photo = CROWD[0]
    multi = post(api, "/v1/multi-feature", image=b64(photo), maxResults=5)
    assert list(multi) == ["version", "feature_info_list"]
    assert len(multi["feature_info_list"]) == 5
    areas = []
    for item in multi["feature_info_list"]:
        box = item["face_detect"]["boundingBox"]
        areas.append((box["right"] - box["left"]) * (box["bottom"] - box["top"]))
        assert len(item["feature"]) == 2732
    assert areas == sorted(areas, reverse=True)  # largest first

    embeddings = post(api, "/v1/multi-embeddings", image=b64(photo), maxResults=5)
    assert list(embeddings) == ["version", "embeddings_info_list"]
    for feat, emb in zip(
        multi["feature_info_list"], embeddings["embeddings_info_list"], strict=True
    ):
        assert feat["face_detect"] == emb["face_detect"]
        np.testing.assert_allclose(
            decode_feature(feat["feature"], "f"), emb["embeddings"], atol=1e-6
        )
    default = post(api, "/v1/multi-feature", image=b64(photo))
    assert len(default["feature_info_list"]) == min(128, _face_count(api, photo))


def _face_count(api, photo) -> int:
    return len(post(api, "/v1/detect", image=b64(photo), maxResults=1000)["faces"])


def test_feature_only_on_a_crop_aligned_by_the_service_equals_feature(api, features):
    """Align the largest face exactly as the service does, then embed the crop alone."""
    from face_api.ops.runner_hop import DETECTION_WIDTH
    from face_api.pipeline.faces import align_faces

    photo = IDENTITIES[7]
    face = post(api, "/v1/feature", image=b64(photo))["face_detect"]
    # The service aligns from unrounded landmarks; re-detect in process for those.
    detections = post(api, "/v1/detect", image=b64(photo), maxResults=1)["faces"]
    assert detections[0]["boundingBox"] == face["boundingBox"]
    from tests.e2e.inprocess import detect_unrounded

    row = detect_unrounded(photo)
    assert row.shape == (DETECTION_WIDTH,)
    crop = align_faces(cv2.imread(str(photo)), row[np.newaxis], 112)[0]
    ok, png = cv2.imencode(".png", crop)
    crop_b64 = base64.b64encode(png.tobytes()).decode()

    body = post(api, "/v1/feature-only", image=crop_b64)
    assert body["face_detect"] == {
        "processed": False,
        "confidence": 0.0,
        "boundingBox": {"left": 0, "top": 0, "right": 112, "bottom": 112},
        "landmarks": [],
    }
    only = decode_feature(body["feature"], "f")
    assert float(only @ features[photo.name]) == pytest.approx(1.0, abs=1e-5)

    emb_only = post(api, "/v1/embeddings-only", image=crop_b64)
    np.testing.assert_allclose(emb_only["embeddings"], only, atol=1e-6)
    file_only = api.post("/v1/file/feature-only", files={"image": ("c.png", png.tobytes())})
    assert file_only.json() == body
    file_emb = api.post("/v1/file/embeddings-only", files={"image": ("c.png", png.tobytes())})
    assert file_emb.json() == emb_only


def test_no_face_answers_per_contract(api):
    blank = np.full((300, 400, 3), 90, np.uint8)
    ok, data = cv2.imencode(".jpg", blank)
    empty = base64.b64encode(data.tobytes()).decode()
    no_face = {
        "processed": False,
        "confidence": 0.0,
        "boundingBox": {"left": 0, "top": 0, "right": 0, "bottom": 0},
        "landmarks": [],
    }

    feature = post(api, "/v1/feature", image=empty)
    assert feature["feature"] == "" and feature["face_detect"] == no_face
    embeddings = post(api, "/v1/embeddings", image=empty)
    assert embeddings["embeddings"] == [] and embeddings["face_detect"] == no_face
    assert post(api, "/v1/multi-feature", image=empty)["feature_info_list"] == []
    assert post(api, "/v1/multi-embeddings", image=empty)["embeddings_info_list"] == []

    score = post(api, "/v1/score", image1=b64(IDENTITIES[0]), image2=empty)
    assert score["score"] == 0
    assert len(score["face_detects"]) == 2
    assert score["face_detects"][0]["processed"] is True
    assert score["face_detects"][1] == no_face
    reversed_ = post(api, "/v1/score", image1=empty, image2=b64(IDENTITIES[0]))
    assert [d["processed"] for d in reversed_["face_detects"]] == [False, True]
