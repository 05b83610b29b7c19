"""Each face's quality: will the recognizer know this face again? The measures come from what
the pipeline already has (the face's detection row, its aligned crop, its embedding's norm before
normalization); the grade is calibrated on that outcome, not on each measure's spread over clean
photos (``benchmarks/probes/quality.py`` degrades the identity photos 51 ways, mild to severe,
and measures each face's cosine to the same face in good condition).

- recognizability: the cosine a face's embedding is expected to keep to the same face in good
  condition, 0-1, from the embedding's norm (relative to the recognizer's norm for a good face:
  ``norm_reference``), the head's turn and the crop's motion blur (``recognizability``). The
  embedding norm is what the recognizer itself says about the face: blur, noise, compression,
  darkness and occlusion all shorten it, and it alone separates the faces that keep their identity
  from those that lose it far better than the pixel measures do (ROC AUC 0.96 against sharpness
  0.58 and brightness 0.61 on the probe's set). A turned face embeds shorter without being worse;
  a face smeared one way keeps more norm than it keeps identity;
- size: the box's shorter side and the inter-ocular distance, in image pixels. The grade uses the
  box: a face turned in profile has its eyes close together however large it is;
- pose: yaw, pitch and roll in degrees. Roll is the angle of the eye and mouth lines (exact for
  a face turned in the image plane); yaw and pitch come from ``cv2.solvePnP`` of the five
  landmarks, turned upright first, against a generic 3-D five-point face (positive yaw: the nose
  towards the image's right; positive pitch: looking up). Mirroring a face flips its yaw's sign;
- sharpness: the variance of the Laplacian of the aligned crop's luma, mapped onto 0-1 as
  ``v / (v + SHARPNESS_HALF)``; brightness: the crop's mean luma, 0-1; motion blur: the
  coherence of the crop's gradients, 0-1 (0: edges every way, as a face has; towards 1: all
  smeared one way). They no longer grade a face by themselves: they name the likely cause
  (``LOW_SHARPNESS``, ``LOW_BRIGHTNESS``, ``OVEREXPOSED``, ``MOTION_BLUR``) when the face is
  below high for its recognizability;
- the detector's score.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import cv2
import numpy as np

from face_api.ops.runner_hop import BOX, LANDMARKS, SCORE
from face_api.ops.settings import Settings

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
MEASURES = (
    "sharpness",
    "brightness",
    "yaw",
    "pitch",
    "roll",
    "embedding_norm",
    "motion_blur",
    "recognizability",
)


@dataclass(frozen=True)
class RecognizabilityModel:
    """The expected cosine to the same face in good condition, as a line fitted by least squares
    on the probe's set (``python -m benchmarks.probes.quality --fit`` fits it again):
    ``intercept + log_norm * ln(norm / norm_reference) + turn * max(|yaw|, |pitch|) +
    motion_blur * max(0, motion blur - motion_blur_knee)``, clipped to 0-1. The motion blur counts
    only beyond the knee, past what a face's own edges give (90% of clean frames under 0.30):
    that way it refused 74% of the faces that 25 px of horizontal motion blur ruined, against
    59% as a straight term, whose weight the faces blurred other ways held down."""

    intercept: float
    log_norm: float
    turn: float  # per degree
    motion_blur: float
    motion_blur_knee: float

    def __call__(self, norm_ratio: float, turn_deg: float, motion_blur: float) -> float:
        value = (
            self.intercept
            + self.log_norm * float(np.log(max(norm_ratio, 1e-6)))
            + self.turn * turn_deg
            + self.motion_blur * max(0.0, motion_blur - self.motion_blur_knee)
        )
        return float(np.clip(value, 0.0, 1.0))


# Fitted on buffalo_sc_int8's faces; on buffalo_m_int8's (another detector, so other crops) the
# same fit gives 0.831, 1.065, 0.0025 and -0.344.
RECOGNIZABILITY = RecognizabilityModel(
    intercept=0.830, log_norm=1.103, turn=0.0027, motion_blur=-0.329, motion_blur_knee=0.25
)
# The recognizer's norm for a good face where none can be measured (insightface's sample crop is
# missing): w600k_mbf's (buffalo_sc, buffalo_sc_int8, buffalo_m_int8), 23.2.
DEFAULT_NORM_REFERENCE = 23.2


def measure(face: np.ndarray, crop: np.ndarray, norm: float, norm_reference: float) -> np.ndarray:
    """One face's measures in ``MEASURES`` order, from its row, aligned crop and embedding norm
    (``norm_reference``: the recognizer's norm for a good face, ``FaceEngine.norm_reference``)."""
    yaw, pitch, roll = pose(face[LANDMARKS].reshape(5, 2).astype(np.float64))
    luma = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    variance = float(cv2.Laplacian(luma, cv2.CV_64F).var())
    streak = motion_blur(luma)
    ratio = norm / norm_reference
    return np.array(
        [
            variance / (variance + SHARPNESS_HALF),
            float(luma.mean()) / 255.0,
            yaw,
            pitch,
            roll,
            norm,
            streak,
            RECOGNIZABILITY(ratio, max(abs(yaw), abs(pitch)), streak),
        ],
        np.float32,
    )


def motion_blur(luma: np.ndarray) -> float:
    """The coherence of the gradients inside the aligned crop (its middle five-sevenths: the face,
    not the background at its corners), from their structure tensor: 0 where edges run every way,
    1 where all run one way, as a face smeared by motion leaves them. Clean frames 0.09-0.30
    (10th to 90th percentile), 15 px of motion blur 0.27-0.65."""
    margin = luma.shape[0] // 7
    inner = luma[margin:-margin, margin:-margin].astype(np.float32)
    gx = cv2.Sobel(inner, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(inner, cv2.CV_32F, 0, 1)
    xx, yy, xy = float((gx * gx).mean()), float((gy * gy).mean()), float((gx * gy).mean())
    spread = float(np.hypot(xx - yy, 2.0 * xy))  # the eigenvalues' difference
    return spread / (xx + yy) if xx + yy > 0 else 0.0


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
    matrix, _ = cv2.Rodrigues(rotation)
    if not ok or matrix[2, 2] < 0:
        # The iteration fell into the mirror solution, a face seen from behind (|pitch| over 90
        # degrees: 35 of 3,200 probes, two clean profiles among them): SQPnP's global minimum
        # faces the camera.
        ok, rotation, _ = cv2.solvePnP(
            FIVE_POINT_FACE, upright, camera, None, flags=cv2.SOLVEPNP_SQPNP
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
    x1, y1, x2, y2 = face[BOX]
    return float(min(x2 - x1, y2 - y1))


def interocular(face: np.ndarray) -> float:
    left_eye, right_eye = face[LANDMARKS].reshape(5, 2)[:2]
    return float(np.linalg.norm(right_eye - left_eye))


class Grade(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class Reason(StrEnum):
    SMALL_FACE = "SMALL_FACE"
    LOW_CONFIDENCE = "LOW_CONFIDENCE"
    EXTREME_POSE = "EXTREME_POSE"
    LOW_RECOGNIZABILITY = "LOW_RECOGNIZABILITY"
    # The likely causes of a low recognizability, named beside it (they grade nothing alone).
    LOW_SHARPNESS = "LOW_SHARPNESS"
    MOTION_BLUR = "MOTION_BLUR"
    LOW_BRIGHTNESS = "LOW_BRIGHTNESS"
    OVEREXPOSED = "OVEREXPOSED"


# Where a cause is named: outside the clean frames' range (benchmarks/README.md, "Face quality").
CAUSES = {
    Reason.LOW_SHARPNESS: ("sharpness", "below", 0.35),
    Reason.MOTION_BLUR: ("motion_blur", "above", 0.40),
    Reason.LOW_BRIGHTNESS: ("brightness", "below", 0.20),
    Reason.OVEREXPOSED: ("brightness", "above", 0.70),
}


@dataclass(frozen=True)
class Bar:
    """What a grade needs: the least size, detector score and recognizability, the most yaw or
    pitch."""

    face_px: float
    confidence: float
    recognizability: float
    pose_deg: float


@dataclass(frozen=True)
class Bars:
    """The bars of the grades medium and high (the settings' ``FACE_QUALITY_*`` pairs)."""

    medium: Bar
    high: Bar

    @classmethod
    def from_settings(cls, settings: Settings) -> Bars:
        pairs = (
            settings.quality_face_px,
            settings.quality_confidence,
            settings.quality_recognizability,
            settings.quality_pose_deg,
        )
        return cls(Bar(*(p[0] for p in pairs)), Bar(*(p[1] for p in pairs)))

    def judge(self, face: np.ndarray, measures: np.ndarray) -> Verdict:
        return grade(face, measures, self.medium, self.high)


@dataclass(frozen=True)
class Verdict:
    grade: Grade
    reasons: dict[Reason, Grade]  # each reason below high and the grade it earns, worst first


def grade(face: np.ndarray, measures: np.ndarray, medium: Bar, high: Bar) -> Verdict:
    """``low`` where a measure misses the ``medium`` bar, ``medium`` where one misses ``high``;
    a recognizability below high also names its likely causes."""
    values = dict(zip(MEASURES, (float(m) for m in measures), strict=True))
    least = {
        Reason.SMALL_FACE: (face_size(face), "face_px"),
        Reason.LOW_CONFIDENCE: (float(face[SCORE]), "confidence"),
        Reason.LOW_RECOGNIZABILITY: (values["recognizability"], "recognizability"),
    }
    reasons: dict[Reason, Grade] = {}
    for reason, (value, name) in least.items():
        if value < getattr(medium, name):
            reasons[reason] = Grade.LOW
        elif value < getattr(high, name):
            reasons[reason] = Grade.MEDIUM
    turned = max(abs(values["yaw"]), abs(values["pitch"]))
    if turned > medium.pose_deg:
        reasons[Reason.EXTREME_POSE] = Grade.LOW
    elif turned > high.pose_deg:
        reasons[Reason.EXTREME_POSE] = Grade.MEDIUM
    if Reason.LOW_RECOGNIZABILITY in reasons:
        for cause, (name, side, bar) in CAUSES.items():
            if (values[name] < bar) if side == "below" else (values[name] > bar):
                reasons[cause] = reasons[Reason.LOW_RECOGNIZABILITY]
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
    AUTO = "AUTO"  # the default: MEDIUM (benchmarks/README.md, "Face quality": what it refuses)


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
