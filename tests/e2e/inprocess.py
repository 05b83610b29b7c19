"""The service's own pipeline run in process, for checks that need unrounded detections."""

from __future__ import annotations

import asyncio
from functools import lru_cache
from pathlib import Path

import numpy as np

from face_api.inference.engine import FaceEngine
from face_api.ops.runner_hop import FaceQuery
from face_api.ops.settings import Settings
from face_api.pipeline.analysis import FacePipeline
from tests.paths import DEFAULT_PACK_DIR


@lru_cache(maxsize=1)
def pipeline() -> FacePipeline:
    return FacePipeline.in_process(FaceEngine(DEFAULT_PACK_DIR, Settings(device="cpu")))


def detect_unrounded(photo: Path) -> np.ndarray:
    """The largest face's detection row in image pixels, as the service computes it."""
    found = asyncio.run(
        pipeline().analyze([("image", photo.read_bytes())], FaceQuery(max_faces=1, embed=False))
    )
    return found[0].faces[0]
