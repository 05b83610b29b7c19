"""The request pipeline between HTTP and the models.

Decode, letterbox, detect, select, align, embed.

It talks to an ``InferenceBackend`` (the runner through ``bentoml.depends`` in the service, the
engine in process in benchmarks), so pixels stay here and only small tensors cross over.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from face_api.errors import RequestError
from face_api.faces import (
    DetectSortType,
    align_faces,
    clip_boxes,
    letterbox,
    select_faces,
    to_image_coordinates,
)
from face_api.images import decode_base64, decode_image


class InferenceBackend(Protocol):
    async def detect(self, canvases: np.ndarray) -> np.ndarray: ...
    async def embed(self, crops: np.ndarray) -> np.ndarray: ...


class EngineBackend:
    """An in-process engine (blocking ``detect``/``embed``, as ``runners.engine.FaceEngine``) as
    an ``InferenceBackend``: the same pipeline without HTTP, for benchmarks and tests."""

    def __init__(self, engine: object) -> None:
        self.engine = engine

    async def detect(self, canvases: np.ndarray) -> np.ndarray:
        return self.engine.detect(canvases)  # type: ignore[attr-defined]

    async def embed(self, crops: np.ndarray) -> np.ndarray:
        return self.engine.embed(crops)  # type: ignore[attr-defined]


@dataclass
class FacePipeline:
    backend: InferenceBackend
    det_size: int
    crop_size: int
    max_pixels: int
    embed_chunk: int = 64
    # An operator's cap on faces per answer (FACE_MAX_RESULTS_CAP): a larger maxResults is
    # served up to the cap rather than refused, so clients using the reference's defaults work.
    max_results_cap: int = 1000

    # -- images ------------------------------------------------------------------------------
    def image_from_base64(self, text: str, field: str) -> np.ndarray:
        return decode_image(decode_base64(text, field), field, self.max_pixels)

    def image_from_bytes(self, data: bytes, field: str) -> np.ndarray:
        return decode_image(data, field, self.max_pixels)

    def check_crop(self, crop: np.ndarray, field: str) -> np.ndarray:
        height, width = crop.shape[:2]
        if (height, width) != (self.crop_size, self.crop_size):
            raise RequestError(
                field,
                f"expected an aligned {self.crop_size}x{self.crop_size} face crop, got "
                f"{width}x{height}",
                type_="value_error.crop_size",
            )
        return crop

    # -- models ------------------------------------------------------------------------------
    async def detect(self, image: np.ndarray) -> np.ndarray:
        """Every face found, (N, 15) in image pixels, in the detector's order."""
        boxed = letterbox(image, self.det_size)
        padded = (await self.backend.detect(boxed.canvas[np.newaxis]))[0]
        faces = to_image_coordinates(padded[padded[:, 4] > 0], boxed.scale)
        return clip_boxes(faces, image.shape)

    async def find_faces(
        self, image: np.ndarray, sort_type: DetectSortType, max_results: int
    ) -> np.ndarray:
        limit = min(max_results, self.max_results_cap)
        return select_faces(await self.detect(image), sort_type, limit)

    async def embed(self, crops: np.ndarray) -> np.ndarray:
        """Unit embeddings of aligned crops, in chunks of the runner's batch size, concurrently."""
        if len(crops) <= self.embed_chunk:
            return await self.backend.embed(crops)
        chunks = [crops[i : i + self.embed_chunk] for i in range(0, len(crops), self.embed_chunk)]
        return np.concatenate(await asyncio.gather(*(self.backend.embed(c) for c in chunks)))

    async def embed_faces(self, image: np.ndarray, faces: np.ndarray) -> np.ndarray:
        if len(faces) == 0:
            return np.zeros((0, 0), dtype=np.float32)
        return await self.embed(align_faces(image, faces, self.crop_size))
