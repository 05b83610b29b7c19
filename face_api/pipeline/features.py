"""The feature codec and similarity: base64 of little-endian float32, cosine on unit vectors."""

from __future__ import annotations

import base64
import binascii

import numpy as np

from face_api.inference.vectors import normalize
from face_api.ops.errors import ApiError

_FLOAT32_LE = np.dtype("<f4")


def encode_feature(embedding: np.ndarray) -> str:
    return base64.b64encode(np.asarray(embedding, dtype=_FLOAT32_LE).tobytes()).decode("ascii")


def decode_feature(text: str, field: str) -> np.ndarray:
    """A feature string back to a float32 vector; 422 naming ``field`` for anything malformed."""
    try:
        raw = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError.invalid(
            field, "feature is not valid base64", kind="value_error.feature"
        ) from None
    if not raw:
        raise ApiError.invalid(field, "feature is empty", kind="value_error.feature")
    if len(raw) % _FLOAT32_LE.itemsize:
        raise ApiError.invalid(
            field,
            f"feature is {len(raw)} bytes, not a whole number of float32 values",
            kind="value_error.feature",
        )
    vector = np.frombuffer(raw, dtype=_FLOAT32_LE).astype(np.float32)
    if not np.all(np.isfinite(vector)):
        raise ApiError.invalid(field, "feature has non-finite values", kind="value_error.feature")
    if not np.any(vector):
        raise ApiError.invalid(
            field, "feature is all zeros (no direction to compare)", kind="value_error.feature"
        )
    return vector


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity in [-1, 1], neither mapped nor clipped beyond float rounding."""
    a, b = normalize(a), normalize(b)
    return float(np.dot(a, b))


def feature_score(feature1: str, feature2: str) -> float:
    v1 = decode_feature(feature1, "feature1")
    v2 = decode_feature(feature2, "feature2")
    if v1.shape != v2.shape:
        raise ApiError.invalid(
            "feature2",
            f"feature2 has {v2.size} values but feature1 has {v1.size}",
            kind="value_error.feature",
        )
    return cosine(v1, v2)
