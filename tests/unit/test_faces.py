"""Face geometry (face_api/pipeline/faces.py): letterbox mapping, selection and sorting,
alignment."""

from __future__ import annotations

import numpy as np
import pytest

from face_api.ops.runner_hop import DETECTION_WIDTH, DetectSortType
from face_api.pipeline.faces import (
    align_faces,
    letterbox,
    select_faces,
    to_image_coordinates,
)


def face(x1, y1, x2, y2, score) -> np.ndarray:
    row = np.zeros(DETECTION_WIDTH, np.float32)
    row[:5] = x1, y1, x2, y2, score
    # landmarks spread inside the box: eyes, nose, mouth corners
    w, h = x2 - x1, y2 - y1
    points = [(0.3, 0.4), (0.7, 0.4), (0.5, 0.6), (0.35, 0.8), (0.65, 0.8)]
    row[5:] = np.array([(x1 + fx * w, y1 + fy * h) for fx, fy in points]).ravel()
    return row


FACES = np.stack(
    [
        face(100, 50, 140, 90, 0.9),  # area 1600
        face(10, 60, 70, 120, 0.6),  # area 3600
        face(10, 10, 30, 30, 0.95),  # area 400, same left as the one above but higher
        face(300, 5, 330, 35, 0.7),  # area 900
    ]
)


@pytest.mark.parametrize(
    ("sort_type", "expected"),
    [
        (DetectSortType.AREA, [1, 0, 3, 2]),
        (DetectSortType.CONFIDENCE, [2, 0, 3, 1]),
        (DetectSortType.LEFT_TO_RIGHT, [2, 1, 0, 3]),
    ],
)
def test_sort_orders(sort_type, expected):
    chosen = select_faces(FACES, sort_type, 10)
    np.testing.assert_array_equal(chosen, FACES[expected])


def test_max_results_keeps_the_first_in_order():
    chosen = select_faces(FACES, DetectSortType.CONFIDENCE, 2)
    np.testing.assert_allclose(chosen[:, 4], [0.95, 0.9], rtol=1e-6)


def test_letterbox_matches_insightface_scaling_and_maps_back():
    image = np.zeros((480, 1280, 3), np.uint8)
    boxed = letterbox(image, 640)
    assert boxed.canvas.shape == (640, 640, 3)
    assert boxed.scale == pytest.approx(0.5)
    canvas_face = face(50, 60, 70, 90, 0.8)[np.newaxis]
    mapped = to_image_coordinates(canvas_face, boxed.scale)
    np.testing.assert_allclose(mapped[0, :4], [100, 120, 140, 180])
    assert mapped[0, 4] == pytest.approx(0.8)
    np.testing.assert_allclose(mapped[0, 5:], canvas_face[0, 5:] * 2)


def test_clipped_boxes_keep_landmarks():
    from face_api.pipeline.faces import clip_boxes

    row = face(-20, -10, 50, 60, 0.9)
    clipped = clip_boxes(row[np.newaxis], (40, 45, 3))[0]
    np.testing.assert_allclose(clipped[:4], [0, 0, 45, 40])
    np.testing.assert_array_equal(clipped[5:], row[5:])


def test_batched_alignment_equals_insightfaces_norm_crop():
    import insightface
    from insightface.utils import face_align

    from face_api.pipeline.faces import alignment_transforms

    rng = np.random.default_rng(3)
    template = face_align.arcface_dst
    # Landmarks of plausible faces: the template scaled, rotated, shifted and jittered.
    landmarks = []
    for _ in range(50):
        angle, scale = rng.uniform(-0.6, 0.6), rng.uniform(0.3, 4.0)
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        points = (template @ rot.T) * scale + rng.uniform(0, 500, 2) + rng.normal(0, 1.5, (5, 2))
        landmarks.append(points)
    landmarks = np.array(landmarks, dtype=np.float32)
    expected = np.stack([face_align.estimate_norm(p, 112) for p in landmarks])
    # float32 (scikit-image here) against float64: equal to a thousandth of a pixel
    np.testing.assert_allclose(alignment_transforms(landmarks, 112), expected, rtol=1e-4, atol=1e-3)

    image = insightface.data.get_image("t1")
    rows = np.zeros((len(landmarks), DETECTION_WIDTH), np.float32)
    rows[:, 5:] = landmarks.reshape(len(landmarks), 10)
    crops = align_faces(image, rows, 112)
    for crop, points in zip(crops, landmarks, strict=True):
        reference = face_align.norm_crop(image, landmark=points, image_size=112)
        assert np.abs(crop.astype(int) - reference).max() <= 1


def test_alignment_maps_landmarks_to_the_arcface_template():
    from insightface.utils.face_align import arcface_dst

    image = np.zeros((300, 300, 3), np.uint8)
    row = np.zeros(DETECTION_WIDTH, np.float32)
    row[5:] = (arcface_dst * 2 + 20).ravel()  # the template, scaled 2x and shifted
    for x, y in (arcface_dst * 2 + 20).astype(int):
        image[y - 1 : y + 2, x - 1 : x + 2] = 255
    crops = align_faces(image, row[np.newaxis], 112)
    assert crops.shape == (1, 112, 112, 3) and crops.dtype == np.uint8
    for x, y in arcface_dst.astype(int):
        assert crops[0, y, x].max() > 100
