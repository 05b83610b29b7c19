"""The face endpoints' work in process (face_api/http/face_endpoints.py), against a fake runner:
what each endpoint asks the runner for, and the contract's answer it makes of the runner's faces
and embeddings. (The real runner and server: tests/e2e.)"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from face_api.http.face_endpoints import detect_result, whole_crop
from face_api.http.schemas import DetectResult
from face_api.ops.runner_hop import DETECTION_WIDTH, Analysis, DetectSortType, FaceQuery
from face_api.pipeline.features import decode_feature
from tests.fakes import fake_endpoints


def face(x1: float, y1: float, x2: float, y2: float, score: float = 0.9) -> np.ndarray:
    row = np.zeros(DETECTION_WIDTH, np.float32)
    row[:5] = x1, y1, x2, y2, score
    row[5:] = np.tile([(x1 + x2) / 2, (y1 + y2) / 2], 5)
    return row


def two_faces(quality: bool = False) -> Analysis:
    faces = np.stack([face(10.4, 20.6, 60.2, 90.0), face(-5.0, 0.0, 30.0, 35.0, 0.7)])
    embeddings = np.array([[0.0, 1.0, 0.0, 0.0], [0.6, 0.8, 0.0, 0.0]], np.float32)
    # sharpness, brightness, yaw, pitch, roll, norm, motion blur, recognizability
    row = [0.5, 0.5, 0.0, 0.0, 0.0, 20.0, 0.2, 0.9]
    measures = np.tile(np.float32(row), (2, 1)) if quality else None
    return Analysis(faces=faces, embeddings=embeddings, height=100, width=50, quality=measures)


def no_faces() -> Analysis:
    empty = np.zeros((0, 4), np.float32)  # as the runner answers an image without a face
    no_face = np.zeros((0, DETECTION_WIDTH), np.float32)
    return Analysis(faces=no_face, embeddings=empty, height=10, width=10)


IMAGE = ("image", b"encoded")


def test_detect_asks_once_and_answers_pixels_clipped_to_the_image():
    faces, runner = fake_endpoints([two_faces()])
    answer = asyncio.run(faces.detect(IMAGE, seq=7, sort_type=1, max_results=5, quality=False))
    assert runner.calls == [
        {
            "images": [IMAGE],
            "query": FaceQuery(max_faces=5, sort_type=DetectSortType.CONFIDENCE, embed=False),
        }
    ]
    assert answer.seq == 7 and len(answer.faces) == 2
    first, second = answer.faces
    box = first.bounding_box
    assert (box.left, box.top, box.right, box.bottom) == (10, 21, 50, 90)  # right clipped to 50
    assert second.bounding_box.left == 0 and first.quality is None


def test_feature_is_the_largest_faces_embedding_as_base64_float32():
    faces, runner = fake_endpoints([two_faces()])
    answer = asyncio.run(faces.feature(IMAGE, quality=False))
    assert runner.calls[0]["query"] == FaceQuery(max_faces=1, embed=True)
    assert decode_feature(answer.feature, "feature").tolist() == [0.0, 1.0, 0.0, 0.0]
    assert answer.face_detect.processed and answer.face_detect.confidence == pytest.approx(0.9)


def test_feature_with_quality_grades_the_face():
    faces, runner = fake_endpoints([two_faces(quality=True)])
    answer = asyncio.run(faces.embeddings(IMAGE, quality=True))
    assert runner.calls[0]["query"] == FaceQuery(max_faces=1, quality=True)
    quality = answer.face_detect.quality
    assert quality is not None and quality.recognizability == pytest.approx(0.9)
    # a 49.8 px box (the high bar: 32), recognizability 0.9 (the high bar: 0.84)
    assert quality.grade == "high" and quality.reasons == []
    assert answer.embeddings == [0.0, 1.0, 0.0, 0.0]


def test_no_face_answers_the_contracts_empty_entry():
    faces, _ = fake_endpoints([no_faces()])
    feature = asyncio.run(faces.feature(IMAGE, quality=False))
    assert feature.feature == "" and feature.face_detect == DetectResult()
    assert asyncio.run(faces.multi_embeddings(IMAGE, 5)).embeddings_info_list == []


def test_multi_feature_keeps_every_face_in_order():
    faces, runner = fake_endpoints([two_faces()])
    answer = asyncio.run(faces.multi_feature(IMAGE, 128))
    assert runner.calls[0]["query"] == FaceQuery(max_faces=128)
    features = [decode_feature(f.feature, "feature").tolist() for f in answer.feature_info_list]
    assert features == [[0.0, 1.0, 0.0, 0.0], pytest.approx([0.6, 0.8, 0.0, 0.0])]


def test_a_crop_is_embedded_without_detection_and_its_box_is_the_whole_crop():
    faces, runner = fake_endpoints([])
    answer = asyncio.run(faces.feature_only(("image", b"crop")))
    assert runner.calls == [{"crops": [("image", b"crop")]}]
    assert answer.face_detect == whole_crop(112)


def test_score_sends_both_images_in_one_call():
    faces, runner = fake_endpoints([two_faces(), two_faces()])
    answer = asyncio.run(faces.score(("image1", b"a"), ("image2", b"b")))
    assert len(runner.calls) == 1 and [i[0] for i in runner.calls[0]["images"]] == [
        "image1",
        "image2",
    ]
    assert answer.score == pytest.approx(1.0) and len(answer.face_detects) == 2


def test_score_without_a_face_in_one_image_is_zero():
    faces, _ = fake_endpoints([two_faces(), no_faces()])
    answer = asyncio.run(faces.score(("image1", b"a"), ("image2", b"b")))
    assert answer.score == 0.0 and answer.face_detects[1] == DetectResult()


# -- faces as the reference's response objects -----------------------------------------------
def test_detect_result_is_clipped_integer_pixels_in_landmark_order():
    row = np.zeros(DETECTION_WIDTH, np.float32)
    row[:5] = [-5.4, 10.6, 50.5, 130.2, 0.77]
    cx, cy = 22.5, 70.4
    row[5:] = [cx - 10, cy - 10, cx + 10, cy - 10, cx, cy, cx - 8, cy + 10, cx + 8, cy + 10]
    result = detect_result(row, (100, 40, 3))
    box = result.bounding_box
    assert (box.left, box.top, box.right, box.bottom) == (0, 11, 40, 100)
    assert result.processed and result.confidence == pytest.approx(0.77)
    assert len(result.landmarks) == 5
    left_eye, right_eye = result.landmarks[0], result.landmarks[1]
    assert left_eye.x < right_eye.x  # as seen in the image


def test_no_face_and_whole_crop_shapes():
    empty = DetectResult().model_dump()
    assert empty == {
        "processed": False,
        "confidence": 0.0,
        "boundingBox": {"left": 0, "top": 0, "right": 0, "bottom": 0},
        "landmarks": [],
    }
    crop = whole_crop(112).model_dump()
    assert crop["boundingBox"] == {"left": 0, "top": 0, "right": 112, "bottom": 112}
    assert crop["processed"] is False and crop["landmarks"] == []
