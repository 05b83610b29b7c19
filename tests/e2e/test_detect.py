"""/v1/detect and /v1/file/detect against a real server with real models and photos."""

from __future__ import annotations

import base64

import cv2
import insightface
import numpy as np
import pytest

from tests.helpers import b64
from tests.paths import CROWD


@pytest.fixture(scope="module")
def t1_b64() -> str:
    ok, data = cv2.imencode(
        ".jpg", insightface.data.get_image("t1"), [cv2.IMWRITE_JPEG_QUALITY, 95]
    )
    assert ok
    return base64.b64encode(data.tobytes()).decode()


def detect(api, image: str, **fields) -> dict:
    response = api.post("/v1/detect", json={"image": image, **fields})
    assert response.status_code == 200, response.text
    return response.json()


def box_of(face: dict) -> tuple[int, int, int, int]:
    b = face["boundingBox"]
    return b["left"], b["top"], b["right"], b["bottom"]


def test_t1_has_six_faces_each_box_holding_its_landmarks(api, t1_b64):
    body = detect(api, t1_b64, seq=42)
    assert body["seq"] == 42
    assert len(body["faces"]) == 6
    for face in body["faces"]:
        assert face["processed"] is True and 0.5 <= face["confidence"] <= 1.0
        left, top, right, bottom = box_of(face)
        assert len(face["landmarks"]) == 5
        for point in face["landmarks"]:
            assert left <= point["x"] <= right and top <= point["y"] <= bottom
        eye_l, eye_r, nose, mouth_l, mouth_r = face["landmarks"]
        assert eye_l["x"] < eye_r["x"] and mouth_l["x"] < mouth_r["x"]  # as seen
        assert max(eye_l["y"], eye_r["y"]) < nose["y"] < min(mouth_l["y"], mouth_r["y"])


def test_sort_orders_and_max_results(api, t1_b64):
    by_area = detect(api, t1_b64)["faces"]
    areas = [(x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in map(box_of, by_area)]
    assert areas == sorted(areas, reverse=True)

    by_confidence = detect(api, t1_b64, detectSortType=1)["faces"]
    scores = [f["confidence"] for f in by_confidence]
    assert scores == sorted(scores, reverse=True)

    left_to_right = detect(api, t1_b64, detectSortType=2)["faces"]
    lefts = [box_of(f)[0] for f in left_to_right]
    assert lefts == sorted(lefts)

    assert sorted(map(box_of, by_area)) == sorted(map(box_of, by_confidence))
    top3 = detect(api, t1_b64, maxResults=3)["faces"]
    assert top3 == by_area[:3]
    assert detect(api, t1_b64, maxResults=1, detectSortType=1)["faces"] == by_confidence[:1]


@pytest.mark.parametrize("photo", CROWD, ids=[p.name for p in CROWD])
def test_crowd_matches_insightface_reference(api, reference, photo):
    """Same count, boxes within 2 px, embeddings at cosine >= 0.99 to FaceAnalysis's own."""
    expected = reference.get(cv2.imread(str(photo)))
    body = api.post("/v1/multi-embeddings", json={"image": b64(photo), "maxResults": 1000})
    assert body.status_code == 200, body.text
    got = body.json()["embeddings_info_list"]
    assert len(got) == len(expected) >= 20

    ref_boxes = np.array([f.bbox for f in expected])
    ref_embeddings = np.array([f.normed_embedding for f in expected])
    for item in got:
        box = np.array(box_of(item["face_detect"]), dtype=np.float32)
        nearest = int(np.argmin(np.abs(ref_boxes - box).max(axis=1)))
        # The service clips to the image; the reference does not.
        height, width = cv2.imread(str(photo)).shape[:2]
        ref_box = np.clip(ref_boxes[nearest], 0, [width, height, width, height])
        assert np.abs(ref_box - box).max() <= 2.0
        embedding = np.array(item["embeddings"], dtype=np.float32)
        assert embedding.shape == (512,)
        assert abs(np.linalg.norm(embedding) - 1.0) < 1e-4
        assert float(embedding @ ref_embeddings[nearest]) >= 0.99


def test_file_twin_answers_the_same(api, t1_b64):
    raw = base64.b64decode(t1_b64)
    fields = {"seq": "5", "maxResults": "4", "detectSortType": "2"}
    response = api.post(
        "/v1/file/detect", files={"image": ("t1.jpg", raw, "image/jpeg")}, data=fields
    )
    assert response.status_code == 200, response.text
    assert response.json() == detect(api, t1_b64, seq=5, maxResults=4, detectSortType=2)


def test_photo_without_a_face_is_an_empty_list(api):
    blank = np.full((480, 640, 3), 180, np.uint8)
    ok, data = cv2.imencode(".png", blank)
    body = detect(api, base64.b64encode(data.tobytes()).decode(), seq=3)
    assert body == {"seq": 3, "faces": []}
