"""Grading a face's quality measures, and what each enrollment bar refuses (no models)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from face_api.ops.settings import Settings
from face_api.pipeline.quality import (
    MEASURES,
    RECOGNIZABILITY,
    Bar,
    Bars,
    Grade,
    QualityFilter,
    Reason,
    grade,
    measure,
    motion_blur,
    pose,
    refusals,
)

MEDIUM = Bar(face_px=16, confidence=0.55, recognizability=0.655, pose_deg=70)
HIGH = Bar(face_px=32, confidence=0.65, recognizability=0.84, pose_deg=40)
# A frontal face, 100 px wide: eyes, nose, mouth corners, as the detector places them.
POINTS = [(130, 140), (170, 140), (150, 162), (135, 185), (165, 185)]


def face(width: float = 100, score: float = 0.8) -> np.ndarray:
    return np.array(
        [100, 100, 100 + width, 100 + width * 1.2, score, *np.ravel(POINTS)], np.float32
    )


def measures(
    sharpness=0.8, brightness=0.45, yaw=0.0, pitch=0.0, blur=0.15, recognizability=0.9
) -> np.ndarray:
    values = [sharpness, brightness, yaw, pitch, 0.0, 23.0, blur, recognizability]
    assert len(values) == len(MEASURES)
    return np.array(values, np.float32)


def test_a_clean_frontal_face_is_high():
    verdict = grade(face(), measures(), MEDIUM, HIGH)
    assert verdict.grade is Grade.HIGH and verdict.reasons == {}


def test_the_default_bars_are_the_settings():
    bars = Bars.from_settings(Settings())
    assert bars.medium == MEDIUM and bars.high == HIGH


@pytest.mark.parametrize(
    ("row", "values", "reason", "expected"),
    [
        (face(width=12), measures(), Reason.SMALL_FACE, Grade.LOW),
        (face(width=24), measures(), Reason.SMALL_FACE, Grade.MEDIUM),
        (face(score=0.52), measures(), Reason.LOW_CONFIDENCE, Grade.LOW),
        (face(score=0.6), measures(), Reason.LOW_CONFIDENCE, Grade.MEDIUM),
        (face(), measures(recognizability=0.5), Reason.LOW_RECOGNIZABILITY, Grade.LOW),
        (face(), measures(recognizability=0.8), Reason.LOW_RECOGNIZABILITY, Grade.MEDIUM),
        (face(), measures(yaw=-75), Reason.EXTREME_POSE, Grade.LOW),
        (face(), measures(pitch=50), Reason.EXTREME_POSE, Grade.MEDIUM),
    ],
)
def test_each_bar_missed_names_its_reason(row, values, reason, expected):
    verdict = grade(row, values, MEDIUM, HIGH)
    assert verdict.grade is expected and verdict.reasons == {reason: expected}


def test_sharpness_brightness_and_motion_blur_grade_nothing_by_themselves():
    """JPEG blocks read as sharp and a dark face can still be recognised: the pixel measures
    predicted the outcome poorly (ROC AUC 0.58-0.61 on the probe's set), so they only name the
    likely cause of a low recognizability."""
    ruined = measures(sharpness=0.05, brightness=0.05, blur=0.9)
    assert grade(face(), ruined, MEDIUM, HIGH).grade is Grade.HIGH


@pytest.mark.parametrize(
    ("values", "cause"),
    [
        (measures(sharpness=0.1, recognizability=0.5), Reason.LOW_SHARPNESS),
        (measures(blur=0.6, recognizability=0.5), Reason.MOTION_BLUR),
        (measures(brightness=0.1, recognizability=0.5), Reason.LOW_BRIGHTNESS),
        (measures(brightness=0.8, recognizability=0.5), Reason.OVEREXPOSED),
    ],
)
def test_a_low_recognizability_names_its_likely_cause_after_it(values, cause):
    verdict = grade(face(), values, MEDIUM, HIGH)
    assert verdict.grade is Grade.LOW
    assert list(verdict.reasons) == [Reason.LOW_RECOGNIZABILITY, cause]
    assert refusals(verdict, QualityFilter.AUTO) == [Reason.LOW_RECOGNIZABILITY, cause]


def test_reasons_come_worst_first():
    verdict = grade(face(width=24), measures(recognizability=0.5), MEDIUM, HIGH)
    assert list(verdict.reasons.items()) == [
        (Reason.LOW_RECOGNIZABILITY, Grade.LOW),
        (Reason.SMALL_FACE, Grade.MEDIUM),
    ]


def test_each_filter_refuses_what_it_says():
    unreadable = grade(face(), measures(recognizability=0.4), MEDIUM, HIGH)
    tiny = grade(face(width=12), measures(), MEDIUM, HIGH)
    medium = grade(face(width=24), measures(), MEDIUM, HIGH)
    assert refusals(unreadable, QualityFilter.NONE) == []
    assert refusals(unreadable, QualityFilter.LOW) == []  # still a face
    assert refusals(tiny, QualityFilter.LOW) == [Reason.SMALL_FACE]
    assert refusals(unreadable, QualityFilter.AUTO) == [Reason.LOW_RECOGNIZABILITY]
    assert refusals(unreadable, QualityFilter.MEDIUM) == [Reason.LOW_RECOGNIZABILITY]
    assert refusals(medium, QualityFilter.MEDIUM) == []
    assert refusals(medium, QualityFilter.HIGH) == [Reason.SMALL_FACE]


def test_recognizability_falls_with_the_norm_and_the_motion_blur():
    good = RECOGNIZABILITY(1.0, 0.0, 0.15)
    assert 0.8 < good < 0.9  # the reference face's norm, frontal, a face's usual gradients
    assert RECOGNIZABILITY(0.75, 0.0, 0.15) < 0.655 < good  # a quarter shorter: refused by AUTO
    assert RECOGNIZABILITY(1.0, 0.0, 0.6) < good
    # A turned face embeds shorter without being worse: the same norm counts for more.
    assert RECOGNIZABILITY(0.9, 60.0, 0.15) > RECOGNIZABILITY(0.9, 0.0, 0.15)
    assert RECOGNIZABILITY(0.01, 0.0, 1.0) == 0.0 and RECOGNIZABILITY(3.0, 0.0, 0.0) == 1.0


def test_motion_blur_is_high_for_a_face_smeared_one_way():
    texture = np.random.default_rng(0).integers(0, 256, (112, 112), dtype=np.uint8)
    texture = cv2.GaussianBlur(texture, (0, 0), 1.5)  # edges every way, as a face has
    streak = np.zeros((25, 25), np.float32)
    streak[12, :] = 1 / 25
    smeared = cv2.filter2D(texture, -1, streak)
    assert motion_blur(texture) < 0.15 and motion_blur(smeared) > 0.6
    assert motion_blur(np.full((112, 112), 128, np.uint8)) == 0.0  # flat: no edges at all


def test_measure_reads_the_norm_against_the_recognizers_reference():
    crop = cv2.GaussianBlur(
        np.random.default_rng(1).integers(0, 256, (112, 112, 3), dtype=np.uint8), (0, 0), 1.5
    )
    at_reference = measure(face(), crop, 23.2, 23.2)
    on_another_scale = measure(face(), crop, 46.4, 46.4)  # a model whose norms run twice as long
    column = MEASURES.index("recognizability")
    assert at_reference[column] == pytest.approx(on_another_scale[column])
    assert at_reference[MEASURES.index("embedding_norm")] == pytest.approx(23.2)
    assert measure(face(), crop, 15.0, 23.2)[column] < at_reference[column]


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
    monkeypatch.setenv("FACE_QUALITY_FACE_PX", "[12, 90]")
    monkeypatch.setenv("FACE_QUALITY_RECOGNIZABILITY", "[0.5, 0.9]")
    settings = Settings()
    assert settings.quality_face_px == (12.0, 90.0)
    assert settings.quality_recognizability == (0.5, 0.9)


@pytest.mark.parametrize("removed", ["FACE_QUALITY_SHARPNESS", "FACE_QUALITY_BRIGHTNESS"])
def test_a_removed_quality_setting_refuses_to_start_naming_its_successor(monkeypatch, removed):
    monkeypatch.setenv(removed, "[0.1, 0.4]")
    with pytest.raises(ValidationError, match="FACE_QUALITY_RECOGNIZABILITY"):
        Settings()


def test_looking_up_is_a_positive_pitch():
    landmarks = np.array(POINTS, np.float64)
    landmarks[2, 1] -= 10  # the nose towards the eyes: the head tilted back
    assert pose(landmarks)[1] > 10
