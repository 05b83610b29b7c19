"""The service's own pipeline run in process, for checks that need unrounded detections."""

from __future__ import annotations

import asyncio
from functools import lru_cache
from pathlib import Path

import numpy as np

from face_api.inference.engine import FaceEngine
from face_api.ops.settings import Settings
from face_api.ops.timing import Timings
from face_api.pipeline.analysis import EngineBackend, FacePipeline
from face_api.pipeline.faces import DetectSortType
from tests.paths import DEFAULT_PACK_DIR


@lru_cache(maxsize=1)
def pipeline() -> FacePipeline:
    engine = FaceEngine(DEFAULT_PACK_DIR, Settings(device="cpu"))
    return FacePipeline(
        EngineBackend(engine), det_size=640, crop_size=engine.crop_size, max_pixels=40_000_000
    )


def detect_unrounded(photo: Path) -> np.ndarray:
    """The largest face's detection row in image pixels, as the service computes it."""
    found = asyncio.run(
        pipeline().analyze(
            [("image", photo.read_bytes())], 1, DetectSortType.AREA, False, Timings()
        )
    )
    return found[0].faces[0]
