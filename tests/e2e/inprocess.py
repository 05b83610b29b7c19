"""The service's own pipeline run in process, for checks that need unrounded detections."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from face_api.faces import DetectSortType, clip_boxes, letterbox, select_faces, to_image_coordinates
from face_api.settings import Settings
from runners.engine import FaceEngine
from tests.paths import DEFAULT_PACK_DIR


@lru_cache(maxsize=1)
def engine() -> FaceEngine:
    return FaceEngine(DEFAULT_PACK_DIR, Settings(device="cpu"))


def detect_unrounded(photo: Path) -> np.ndarray:
    """The largest face's detection row in image pixels, as the service computes it."""
    image = cv2.imread(str(photo))
    boxed = letterbox(image, 640)
    padded = engine().detect(boxed.canvas[np.newaxis])[0]
    faces = clip_boxes(to_image_coordinates(padded[padded[:, 4] > 0], boxed.scale), image.shape)
    return select_faces(faces, DetectSortType.AREA, 1)[0]
