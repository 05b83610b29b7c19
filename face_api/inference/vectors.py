"""Embedding rows as the models' callers get them: unit L2 norm, so a dot product is a cosine."""

from __future__ import annotations

import numpy as np


def normalize(embeddings: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (a zero row stays zero instead of becoming NaN)."""
    embeddings = np.asarray(embeddings, dtype=np.float32)
    norms = np.linalg.norm(embeddings, axis=-1, keepdims=True)
    return embeddings / np.maximum(norms, np.finfo(np.float32).tiny)
