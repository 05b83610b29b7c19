"""Face geometry: letterboxing for the detector, mapping back, selection, sorting, alignment.

Detections are float32 rows laid out as ``face_api/ops/runner_hop.py`` names them: ``BOX``,
``SCORE``, ``LANDMARKS``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from insightface.utils import face_align

from face_api.ops.runner_hop import BOX, LANDMARKS, SCORE, DetectSortType


@dataclass(frozen=True)
class Letterbox:
    """An image resized (aspect kept) into the top-left of a square canvas, as insightface does."""

    canvas: np.ndarray  # (size, size, 3) uint8
    scale: float  # canvas pixels per image pixel


def letterbox(image: np.ndarray, size: int) -> Letterbox:
    """The same resize and padding as insightface's ``SCRFD`` (so boxes match it exactly)."""
    height, width = image.shape[:2]
    if height / width > 1.0:
        new_height = size
        new_width = int(new_height / (height / width))
    else:
        new_width = size
        new_height = int(new_width * (height / width))
    new_width, new_height = max(new_width, 1), max(new_height, 1)
    canvas = np.zeros((size, size, 3), dtype=np.uint8)
    canvas[:new_height, :new_width] = cv2.resize(image, (new_width, new_height))
    return Letterbox(canvas=canvas, scale=new_height / height)


def to_image_coordinates(detections: np.ndarray, scale: float) -> np.ndarray:
    """Detections from canvas pixels back to image pixels (the score column is kept)."""
    out = detections.astype(np.float32, copy=True)
    out[:, BOX] /= scale
    out[:, LANDMARKS] /= scale
    return out


def clip_boxes(detections: np.ndarray, image_shape: tuple[int, ...]) -> np.ndarray:
    """Boxes clipped to the image, so that sorting by area uses the box the client sees.

    Landmarks are left as detected: alignment needs them even where they leave the image.
    """
    height, width = image_shape[:2]
    out = detections.copy()
    corners = out[:, BOX].reshape(-1, 2, 2)  # (x1, y1), (x2, y2)
    out[:, BOX] = np.clip(corners, 0, [width, height]).reshape(-1, 4)
    return out


def box_sizes(detections: np.ndarray) -> np.ndarray:
    """(N, 2) widths and heights of the boxes."""
    corners = detections[:, BOX].reshape(-1, 2, 2)
    return corners[:, 1] - corners[:, 0]


def box_areas(detections: np.ndarray) -> np.ndarray:
    return box_sizes(detections).prod(axis=1)


def order_faces(detections: np.ndarray, sort_type: DetectSortType) -> np.ndarray:
    """Indices of ``detections`` in the requested order (stable, so ties keep detector order)."""
    if sort_type == DetectSortType.AREA:
        return np.argsort(-box_areas(detections), kind="stable")
    if sort_type == DetectSortType.CONFIDENCE:
        return np.argsort(-detections[:, SCORE], kind="stable")
    left, top = detections[:, BOX][:, 0], detections[:, BOX][:, 1]
    return np.lexsort((top, left))


def select_faces(detections: np.ndarray, sort_type: DetectSortType, max_results: int) -> np.ndarray:
    """The first ``max_results`` detections in the requested order."""
    return detections[order_faces(detections, sort_type)[:max_results]]


def landmarks_of(detections: np.ndarray) -> np.ndarray:
    """(N, 5, 2) landmarks: left eye, right eye, nose, left and right mouth corner (as seen)."""
    return detections[:, LANDMARKS].reshape(-1, 5, 2)


def alignment_transforms(landmarks: np.ndarray, crop_size: int) -> np.ndarray:
    """(N, 2, 3) affine matrices mapping each face's 5 landmarks onto insightface's ArcFace
    template, for all faces at once.

    The same least-squares similarity (Umeyama) that insightface's ``estimate_norm`` gets from
    scikit-image one face at a time; that per-face call is most of the alignment time of a crowd
    photo (about 0.5 ms a face here), this is one batched SVD.
    """
    assert crop_size % 112 == 0, "ArcFace templates are defined for multiples of 112"
    template = face_align.arcface_dst.astype(np.float64) * (crop_size / 112.0)
    src = landmarks.astype(np.float64)
    src_mean = src.mean(axis=1, keepdims=True)
    dst_mean = template.mean(axis=0)
    src_centered = src - src_mean
    dst_centered = template - dst_mean
    covariance = np.einsum("ki,nkj->nij", dst_centered, src_centered) / src.shape[1]
    u, singular, vt = np.linalg.svd(covariance)
    reflect = np.where(np.linalg.det(covariance) < 0, -1.0, 1.0)
    signs = np.stack([np.ones_like(reflect), reflect], axis=1)  # (N, 2)
    rotation = u @ (signs[:, :, np.newaxis] * vt)
    variance = src_centered.var(axis=1).sum(axis=1)
    scale = (singular * signs).sum(axis=1) / np.maximum(variance, 1e-12)
    linear = scale[:, np.newaxis, np.newaxis] * rotation
    translation = dst_mean - np.einsum("nij,nj->ni", linear, src_mean[:, 0, :])
    return np.concatenate([linear, translation[:, :, np.newaxis]], axis=2)


def align_faces(image: np.ndarray, detections: np.ndarray, crop_size: int) -> np.ndarray:
    """(N, crop, crop, 3) uint8 crops aligned on the 5 landmarks, as insightface's norm_crop."""
    crops = np.empty((len(detections), crop_size, crop_size, 3), dtype=np.uint8)
    if not len(detections):
        return crops
    for i, matrix in enumerate(alignment_transforms(landmarks_of(detections), crop_size)):
        crops[i] = cv2.warpAffine(image, matrix, (crop_size, crop_size), borderValue=0.0)
    return crops
