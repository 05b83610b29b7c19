"""Each face's quality, from what the pipeline already has: its detection row (box, score, five
landmarks), its aligned crop and its embedding's norm before normalization; and the grade those
measures earn, with the reasons for anything below ``high``.

- size: the box's shorter side and the inter-ocular distance, in image pixels. The grade uses the
  box: a face turned in profile has its eyes close together however large it is;
- pose: yaw, pitch and roll in degrees. Roll is the angle of the eye and mouth lines (exact for
  a face turned in the image plane); yaw and pitch come from ``cv2.solvePnP`` of the five
  landmarks, turned upright first, against a generic 3-D five-point face (positive yaw: the nose
  towards the image's right; positive pitch: looking up). Mirroring a face flips its yaw's sign;
- sharpness: the variance of the Laplacian of the aligned crop's luma, mapped onto 0-1 as
  ``v / (v + SHARPNESS_HALF)``: 0.5 at ``SHARPNESS_HALF``; the identity test frames score 0.54-0.92,
  the same frames blurred with a sigma of 5 pixels 0.02-0.09;
- brightness: the aligned crop's mean luma, 0-1;
- the detector's score, and the embedding's norm before normalization (a known quality signal of
  ArcFace models: blurred faces embed shorter), where the face was embedded.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import cv2
import numpy as np

# A generic face's five landmarks in millimetres (x to the image's right, y down, z away from the
# camera), in insightface's order: the eyes, the nose tip, the mouth's corners.
FIVE_POINT_FACE = np.array(
    [
        [-31.0, -32.0, 26.0],
        [31.0, -32.0, 26.0],
        [0.0, 0.0, 0.0],
        [-25.0, 30.0, 22.0],
        [25.0, 30.0, 22.0],
    ],
    dtype=np.float64,
)
SHARPNESS_HALF = 100.0  # the Laplacian variance that scores 0.5
# The measures the pipeline answers per face (``measure``), column by column.
MEASURES = ("sharpness", "brightness", "yaw", "pitch", "roll", "embedding_norm")


def measure(face: np.ndarray, crop: np.ndarray, norm: float | None) -> np.ndarray:
    """One face's measures in ``MEASURES`` order (``embedding_norm`` NaN if not embedded)."""
    yaw, pitch, roll = pose(face[5:15].reshape(5, 2).astype(np.float64))
    luma = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    variance = float(cv2.Laplacian(luma, cv2.CV_64F).var())
    return np.array(
        [
            variance / (variance + SHARPNESS_HALF),
            float(luma.mean()) / 255.0,
            yaw,
            pitch,
            roll,
            np.nan if norm is None else norm,
        ],
        np.float32,
    )


def pose(landmarks: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from five landmarks in image pixels."""
    eyes = landmarks[1] - landmarks[0]
    # The eye line and the mouth line together: four landmarks hold a turn better than two.
    level = eyes + (landmarks[4] - landmarks[3])
    roll = float(np.degrees(np.arctan2(level[1], level[0])))
    centre = landmarks[:2].mean(axis=0)
    turn = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), roll, 1.0)
    upright = np.hstack([landmarks, np.ones((5, 1))]) @ turn.T
    span = float(np.linalg.norm(eyes)) or 1.0
    focal = 8.0 * span  # a long lens: the face far from the camera, little perspective
    camera = np.array([[focal, 0, centre[0]], [0, focal, centre[1]], [0, 0, 1]], np.float64)
    # Started facing the camera at the distance the eyes' span gives, then refined: five points
    # are too few for OpenCV's closed-form start.
    distance = focal * float(FIVE_POINT_FACE[1, 0] - FIVE_POINT_FACE[0, 0]) / span
    rotation, position = np.zeros((3, 1)), np.array([[0.0], [0.0], [distance]])
    ok, rotation, _ = cv2.solvePnP(
        FIVE_POINT_FACE,
        upright,
        camera,
        None,
        rotation,
        position,
        useExtrinsicGuess=True,
        flags=cv2.SOLVEPNP_ITERATIVE,
    )
    if not ok:
        return 0.0, 0.0, roll
    matrix, _ = cv2.Rodrigues(rotation)
    # Signs as the answer documents them: the nose towards the image's right is a positive yaw,
    # the nose towards the eyes (the head tilted back) a positive pitch.
    yaw = float(np.degrees(np.arcsin(np.clip(matrix[2, 0], -1.0, 1.0))))
    pitch = -float(np.degrees(np.arctan2(matrix[2, 1], matrix[2, 2])))
    return yaw, pitch, roll


def face_size(face: np.ndarray) -> float:
    """The box's shorter side, in pixels."""
    return float(min(face[2] - face[0], face[3] - face[1]))


def interocular(face: np.ndarray) -> float:
    return float(np.linalg.norm(face[7:9] - face[5:7]))


class Grade(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class Reason(StrEnum):
    SMALL_FACE = "SMALL_FACE"
    LOW_CONFIDENCE = "LOW_CONFIDENCE"
    LOW_SHARPNESS = "LOW_SHARPNESS"
    LOW_BRIGHTNESS = "LOW_BRIGHTNESS"
    EXTREME_POSE = "EXTREME_POSE"


@dataclass(frozen=True)
class Bar:
    """What a grade needs: the least size, score, sharpness and brightness, the most yaw or
    pitch."""

    face_px: float
    confidence: float
    sharpness: float
    brightness: float
    pose_deg: float


@dataclass(frozen=True)
class Bars:
    """The bars of the grades medium and high (the settings' ``FACE_QUALITY_*`` pairs)."""

    medium: Bar
    high: Bar

    def judge(self, face: np.ndarray, measures: np.ndarray) -> Verdict:
        return grade(face, measures, self.medium, self.high)


@dataclass(frozen=True)
class Verdict:
    grade: Grade
    reasons: dict[Reason, Grade]  # each measure below high and the grade it earns, worst first


def grade(face: np.ndarray, measures: np.ndarray, medium: Bar, high: Bar) -> Verdict:
    """``low`` where a measure misses the ``medium`` bar, ``medium`` where one misses ``high``."""
    sharpness, brightness, yaw, pitch = (float(m) for m in measures[:4])
    least = {
        Reason.SMALL_FACE: (face_size(face), "face_px"),
        Reason.LOW_CONFIDENCE: (float(face[4]), "confidence"),
        Reason.LOW_SHARPNESS: (sharpness, "sharpness"),
        Reason.LOW_BRIGHTNESS: (brightness, "brightness"),
    }
    reasons: dict[Reason, Grade] = {}
    for reason, (value, name) in least.items():
        if value < getattr(medium, name):
            reasons[reason] = Grade.LOW
        elif value < getattr(high, name):
            reasons[reason] = Grade.MEDIUM
    turned = max(abs(yaw), abs(pitch))
    if turned > medium.pose_deg:
        reasons[Reason.EXTREME_POSE] = Grade.LOW
    elif turned > high.pose_deg:
        reasons[Reason.EXTREME_POSE] = Grade.MEDIUM
    reasons = dict(sorted(reasons.items(), key=lambda item: item[1] is not Grade.LOW))
    if Grade.LOW in reasons.values():
        return Verdict(Grade.LOW, reasons)
    return Verdict(Grade.MEDIUM if reasons else Grade.HIGH, reasons)


class QualityFilter(StrEnum):
    """Enrollment's quality bar, as cloud face APIs name theirs."""

    NONE = "NONE"  # enroll any face
    LOW = "LOW"  # refuse what is hardly a face: too small or too unsure, at the low grade
    MEDIUM = "MEDIUM"  # refuse any face graded low
    HIGH = "HIGH"  # enroll only faces graded high
    AUTO = "AUTO"  # the default: MEDIUM (all clean test frames in, 90% of ruined ones out)


def refusals(verdict: Verdict, bar: QualityFilter) -> list[Reason]:
    """The reasons ``bar`` refuses a face for (empty: it passes)."""
    if bar is QualityFilter.NONE:
        return []
    if bar is QualityFilter.LOW:
        hardly = (Reason.SMALL_FACE, Reason.LOW_CONFIDENCE)
        return [r for r, g in verdict.reasons.items() if g is Grade.LOW and r in hardly]
    if bar in (QualityFilter.MEDIUM, QualityFilter.AUTO):
        return [r for r, g in verdict.reasons.items() if g is Grade.LOW]
    return list(verdict.reasons)
