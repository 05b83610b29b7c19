"""Turning detections and embeddings into the reference's response objects."""

from __future__ import annotations

import numpy as np

from face_api.http.schemas import BoundingBox, DetectResult, Landmark
from face_api.pipeline.faces import landmarks_of


def _clip_round(values: np.ndarray, upper: float) -> list[int]:
    return [int(v) for v in np.clip(np.rint(values), 0, upper)]


def detect_result(face: np.ndarray, image_shape: tuple[int, ...]) -> DetectResult:
    """One detection row as a ``DetectResult``: integer pixels clipped to the image."""
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
    )


def no_face() -> DetectResult:
    """The contract's "no face found" entry: not processed, zero box, no landmarks."""
    return DetectResult()


def whole_crop(image_shape: tuple[int, ...]) -> DetectResult:
    """``feature-only``: no detection ran, the box is the whole aligned crop."""
    height, width = image_shape[:2]
    return DetectResult(bounding_box=BoundingBox(left=0, top=0, right=width, bottom=height))


def embedding_list(embedding: np.ndarray) -> list[float]:
    return [float(v) for v in embedding]
