"""Turning detections and embeddings into the reference's response objects."""

from __future__ import annotations

import numpy as np

from face_api.http.schemas import BoundingBox, DetectResult, FaceQuality, Landmark
from face_api.ops.settings import Settings
from face_api.pipeline import quality as face_quality
from face_api.pipeline.analysis import Analysis
from face_api.pipeline.faces import landmarks_of


def _clip_round(values: np.ndarray, upper: float) -> list[int]:
    return [int(v) for v in np.clip(np.rint(values), 0, upper)]


def quality_bars(settings: Settings) -> face_quality.Bars:
    """The settings' bars for the grades medium and high."""
    pairs = (
        settings.quality_face_px,
        settings.quality_confidence,
        settings.quality_recognizability,
        settings.quality_pose_deg,
    )
    return face_quality.Bars(
        face_quality.Bar(*(p[0] for p in pairs)), face_quality.Bar(*(p[1] for p in pairs))
    )


def quality_of(face: np.ndarray, measures: np.ndarray, bars: face_quality.Bars) -> FaceQuality:
    judged = bars.judge(face, measures)
    m = dict(zip(face_quality.MEASURES, (float(v) for v in measures), strict=True))
    return FaceQuality(
        grade=judged.grade.value,
        reasons=[r.value for r in judged.reasons],
        recognizability=round(m["recognizability"], 3),
        face_size=round(face_quality.face_size(face), 1),
        interocular_distance=round(face_quality.interocular(face), 1),
        yaw=round(m["yaw"], 1),
        pitch=round(m["pitch"], 1),
        roll=round(m["roll"], 1),
        sharpness=round(m["sharpness"], 3),
        brightness=round(m["brightness"], 3),
        motion_blur=round(m["motion_blur"], 3),
        detector_score=float(face[4]),
        embedding_norm=round(m["embedding_norm"], 3),
    )


def detect_result(
    face: np.ndarray, image_shape: tuple[int, ...], quality: FaceQuality | None = None
) -> DetectResult:
    """One detection row as a ``DetectResult``: integer pixels clipped to the image, with its
    ``quality`` where the request asked for it."""
    height, width = image_shape[:2]
    left, right = _clip_round(face[[0, 2]], width)
    top, bottom = _clip_round(face[[1, 3]], height)
    points = landmarks_of(face[np.newaxis])[0]
    xs = _clip_round(points[:, 0], width)
    ys = _clip_round(points[:, 1], height)
    return DetectResult(
        processed=True,
        confidence=float(face[4]),
        bounding_box=BoundingBox(left=left, top=top, right=right, bottom=bottom),
        landmarks=[Landmark(x=x, y=y) for x, y in zip(xs, ys, strict=True)],
        quality=quality,
    )


def detect_results(found: Analysis, bars: face_quality.Bars) -> list[DetectResult]:
    """An analysed image's faces, each with its quality, judged by ``bars``, when it was
    measured."""
    shape = (found.height, found.width)
    if found.quality is None:
        return [detect_result(f, shape) for f in found.faces]
    return [
        detect_result(f, shape, quality_of(f, m, bars))
        for f, m in zip(found.faces, found.quality, strict=True)
    ]


def no_face() -> DetectResult:
    """The contract's "no face found" entry: not processed, zero box, no landmarks."""
    return DetectResult()


def whole_crop(image_shape: tuple[int, ...]) -> DetectResult:
    """``feature-only``: no detection ran, the box is the whole aligned crop."""
    height, width = image_shape[:2]
    return DetectResult(bounding_box=BoundingBox(left=0, top=0, right=width, bottom=height))


def embedding_list(embedding: np.ndarray) -> list[float]:
    return [float(v) for v in embedding]
