"""Grading a face's quality measures, and what each enrollment bar refuses (no models)."""

from __future__ import annotations

import numpy as np
import pytest

from face_api.ops.settings import Settings
from face_api.pipeline.quality import (
    MEASURES,
    Bar,
    Grade,
    QualityFilter,
    Reason,
    grade,
    pose,
    refusals,
)

MEDIUM = Bar(face_px=48, confidence=0.55, sharpness=0.10, brightness=0.15, pose_deg=70)
HIGH = Bar(face_px=80, confidence=0.65, sharpness=0.40, brightness=0.25, pose_deg=40)
# A frontal face, 100 px wide: eyes, nose, mouth corners, as the detector places them.
POINTS = [(130, 140), (170, 140), (150, 162), (135, 185), (165, 185)]


def face(width: float = 100, score: float = 0.8) -> np.ndarray:
    return np.array(
        [100, 100, 100 + width, 100 + width * 1.2, score, *np.ravel(POINTS)], np.float32
    )


def measures(sharpness=0.8, brightness=0.45, yaw=0.0, pitch=0.0) -> np.ndarray:
    values = np.array([sharpness, brightness, yaw, pitch, 0.0, 23.0], np.float32)
    assert len(values) == len(MEASURES)
    return values


def test_a_clean_frontal_face_is_high():
    verdict = grade(face(), measures(), MEDIUM, HIGH)
    assert verdict.grade is Grade.HIGH and verdict.reasons == {}


@pytest.mark.parametrize(
    ("row", "values", "reason", "expected"),
    [
        (face(width=40), measures(), Reason.SMALL_FACE, Grade.LOW),
        (face(width=60), measures(), Reason.SMALL_FACE, Grade.MEDIUM),
        (face(score=0.52), measures(), Reason.LOW_CONFIDENCE, Grade.LOW),
        (face(), measures(sharpness=0.05), Reason.LOW_SHARPNESS, Grade.LOW),
        (face(), measures(sharpness=0.2), Reason.LOW_SHARPNESS, Grade.MEDIUM),
        (face(), measures(brightness=0.1), Reason.LOW_BRIGHTNESS, Grade.LOW),
        (face(), measures(yaw=-75), Reason.EXTREME_POSE, Grade.LOW),
        (face(), measures(pitch=50), Reason.EXTREME_POSE, Grade.MEDIUM),
    ],
)
def test_each_measure_below_a_bar_names_its_reason(row, values, reason, expected):
    verdict = grade(row, values, MEDIUM, HIGH)
    assert verdict.grade is expected and verdict.reasons == {reason: expected}


def test_each_filter_refuses_what_it_says():
    blurred = grade(face(), measures(sharpness=0.05), MEDIUM, HIGH)
    tiny = grade(face(width=40), measures(), MEDIUM, HIGH)
    medium = grade(face(width=60), measures(), MEDIUM, HIGH)
    assert refusals(blurred, QualityFilter.NONE) == []
    assert refusals(blurred, QualityFilter.LOW) == []  # a blurred face is still a face
    assert refusals(tiny, QualityFilter.LOW) == [Reason.SMALL_FACE]
    assert refusals(blurred, QualityFilter.AUTO) == [Reason.LOW_SHARPNESS]
    assert refusals(medium, QualityFilter.MEDIUM) == []
    assert refusals(medium, QualityFilter.HIGH) == [Reason.SMALL_FACE]


def test_pose_of_a_frontal_face_and_its_mirror():
    landmarks = np.array(POINTS, np.float64)
    yaw, pitch, roll = pose(landmarks)
    assert abs(yaw) < 3 and abs(roll) < 1e-6
    turned = landmarks.copy()
    turned[2, 0] += 12  # the nose towards the image's right: the head turned
    yaw, _, _ = pose(turned)
    mirrored = turned.copy()
    mirrored[:, 0] = 300 - mirrored[:, 0]
    mirrored = mirrored[[1, 0, 2, 4, 3]]  # the detector's order: image-left eye first
    assert yaw > 10 and pose(mirrored)[0] == pytest.approx(-yaw, abs=0.5)


def test_the_bars_are_settings(monkeypatch):
    monkeypatch.setenv("FACE_QUALITY_FACE_PX", "[40, 90]")
    assert Settings().quality_face_px == (40.0, 90.0)


def test_looking_up_is_a_positive_pitch():
    landmarks = np.array(POINTS, np.float64)
    landmarks[2, 1] -= 10  # the nose towards the eyes: the head tilted back
    assert pose(landmarks)[1] > 10
