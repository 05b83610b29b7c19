"""The face pipeline: encoded images in, faces and embeddings out.

Decode, letterbox, detect, back to image pixels, select, align, embed. It runs in the runner
process, beside the models, so a request crosses from the API worker once, as the encoded bytes
the client sent (a 640x480 JPEG is about 37 KB, where a letterboxed canvas was 1.2 MB), and the
pixels stay where they were decoded. The pixel work (decode, letterbox, alignment) runs on a pool
of threads, since OpenCV releases the GIL; detection and recognition go through an
``InferenceBackend`` (``face_api/inference/backend.py``: the runner's batchers, or the models
called at once in benchmarks and tests).

What a request asks of it is one ``FaceQuery``, and what it answers per image one ``Analysis``:
the runner hop's types (``face_api/ops/runner_hop.py``), which cross between the API worker and
the runner as they are. The stages it times go to the request's context
(``face_api/ops/context.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import ExitStack, asynccontextmanager, contextmanager
from functools import partial
from typing import Any, Protocol, TypeVar

import numpy as np

from face_api.ops.context import current
from face_api.ops.errors import ApiError
from face_api.ops.runner_hop import Analysis, EncodedImage, FaceQuery
from face_api.pipeline import quality
from face_api.pipeline.decoders import ImageDecoders
from face_api.pipeline.faces import (
    align_faces,
    clip_boxes,
    letterbox,
    select_faces,
    to_image_coordinates,
)

T = TypeVar("T")


class InferenceBackend(Protocol):
    async def detect(self, canvases: np.ndarray) -> list[np.ndarray]: ...
    # The recognizer's raw outputs: the pipeline normalizes them, keeping their norms.
    async def embed(self, crops: np.ndarray) -> np.ndarray: ...


class PixelBudget:
    """The decoded pixels the pipeline holds at once, over every request it serves. An image
    whose pixels would take it past ``limit`` is refused at once (429, before its decode), so
    concurrent large images cannot add up to more memory than the operator allowed. Each image is
    held at its real size (its header's, then what it decoded to) until the request lets it go.
    Reservations happen on the event loop: no lock."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.held = 0

    @contextmanager
    def holding(self, pixels: int) -> Iterator[Callable[[int], None]]:
        """Holds ``pixels`` for the block, which gets a function to settle the hold on the
        pixels really decoded (more or fewer than the header told)."""
        if self.limit is not None and self.held + pixels > self.limit:
            raise ApiError(
                429,
                f"too many image pixels being decoded at once (limit {self.limit}, "
                "FACE_MAX_PIXELS_IN_FLIGHT); retry later",
            )
        taken = pixels
        self.held += taken

        def settle(decoded: int) -> None:
            nonlocal taken
            self.held += decoded - taken
            taken = decoded

        try:
            yield settle
        finally:
            self.held -= taken


class Decoded:
    """A request's images, decoded, and their holds on the pixel budget: ``release`` gives the
    pixels back as soon as the request no longer needs them."""

    def __init__(self, pictures: list[np.ndarray], holds: ExitStack) -> None:
        self.pictures = pictures
        self._holds = holds

    def release(self) -> None:
        self.pictures = []
        self._holds.close()


class FacePipeline:
    def __init__(
        self,
        backend: InferenceBackend,
        decoders: ImageDecoders,
        det_size: int,
        crop_size: int,
        max_pixels: int,
        embed_chunk: int = 64,
        pool: Executor | None = None,
        norm_reference: float | None = None,
        max_pixels_in_flight: int | None = None,
    ) -> None:
        self.backend = backend
        self.det_size = det_size
        self.crop_size = crop_size
        self.max_pixels = max_pixels
        self.budget = PixelBudget(max_pixels_in_flight)
        self.decoders = decoders
        # The pixel work, as the pool's threads run it (partials: no frame of their own).
        self._letterbox = partial(letterbox, size=det_size)
        self._align = partial(align_faces, crop_size=crop_size)
        self.embed_chunk = embed_chunk
        self.pool = pool or ThreadPoolExecutor(1, thread_name_prefix="face-images")
        # The recognizer's norm for a good face (``FaceEngine.norm_reference``): the scale the
        # quality's embedding norm is read against.
        self.norm_reference = norm_reference or quality.DEFAULT_NORM_REFERENCE

    @classmethod
    def in_process(cls, engine: Any, max_pixels: int = 40_000_000) -> FacePipeline:
        """The pipeline on an ``inference.engine.FaceEngine``'s models called at once, without
        the runner's batching: for benchmarks and tests."""
        from face_api.inference.backend import EngineBackend

        return cls(
            EngineBackend(engine.detector, engine.recognizer),
            ImageDecoders(1, max_pixels),
            det_size=engine.settings.det_size,
            crop_size=engine.recognizer.crop_size,
            max_pixels=max_pixels,
            norm_reference=engine.norm_reference,
        )

    async def _each(self, work: Callable[..., T], *per_item: Sequence[Any]) -> list[T]:
        """``work`` on every item, concurrently on the pool."""
        loop = asyncio.get_running_loop()
        calls = [loop.run_in_executor(self.pool, work, *a) for a in zip(*per_item, strict=True)]
        return list(await asyncio.gather(*calls))

    @asynccontextmanager
    async def _decoded(self, images: Sequence[EncodedImage]) -> AsyncIterator[Decoded]:
        """The images decoded, held against the pixel budget (their real size, read first: a
        request past the budget is refused before any decode) until the block ends or it
        ``release``s them."""
        holds = ExitStack()
        try:
            with current().stage("decode"):
                headers = await _in_order(self.decoders.inspect(data, f) for f, data in images)
                settle = holds.enter_context(self.budget.holding(sum(h.pixels for h in headers)))
                pictures = await _in_order(
                    self.decoders.decode(data, field, header)
                    for (field, data), header in zip(images, headers, strict=True)
                )
            settle(sum(p.shape[0] * p.shape[1] for p in pictures))
            yield Decoded(pictures, holds)
        finally:
            holds.close()

    async def analyze(self, images: Sequence[EncodedImage], query: FaceQuery) -> list[Analysis]:
        """Every image's faces, as ``query`` asks: all images' detections in one pass, all
        crops together."""
        context = current()
        async with self._decoded(images) as decoded:
            pictures = decoded.pictures
            sizes = [p.shape[:2] for p in pictures]
            with context.stage("letterbox"):
                boxed = await self._each(self._letterbox, pictures)
            found = await self.backend.detect(np.stack([b.canvas for b in boxed]))
            faces = [
                select_faces(
                    clip_boxes(to_image_coordinates(rows, b.scale), picture.shape),
                    query.sort_type,
                    query.max_faces,
                )
                for rows, b, picture in zip(found, boxed, pictures, strict=True)
            ]
            embeddings: list[np.ndarray | None] = [None] * len(pictures)
            measures: list[np.ndarray | None] = [None] * len(pictures)
            if query.embed or query.quality:
                with context.stage("align"):
                    crops = await self._each(self._align, pictures, faces)
                # The images are no longer needed: their pixels go back before embedding waits.
                del pictures, boxed
                decoded.release()
                unit, all_norms = await self.embed_with_norms(np.concatenate(crops))
                bounds = np.cumsum([len(c) for c in crops])[:-1]
                if query.embed:
                    embeddings = np.split(unit, bounds)
                if query.quality:
                    norms = np.split(all_norms, bounds)
                    with context.stage("quality"):
                        measures = [
                            _measures(f, c, n, self.norm_reference)
                            for f, c, n in zip(faces, crops, norms, strict=True)
                        ]
            return [
                Analysis(faces=f, embeddings=e, height=height, width=width, quality=q)
                for f, e, (height, width), q in zip(faces, embeddings, sizes, measures, strict=True)
            ]

    async def embed_crops(self, images: Sequence[EncodedImage]) -> np.ndarray:
        """Unit embeddings of already aligned crops, each checked to be the recognizer's size."""
        async with self._decoded(images) as decoded:
            crops = decoded.pictures
            for (field, _), crop in zip(images, crops, strict=True):
                self.check_crop(crop, field)
            unit, _ = await self.embed_with_norms(np.stack(crops))
            return unit

    def check_crop(self, crop: np.ndarray, field: str) -> None:
        height, width = crop.shape[:2]
        if (height, width) != (self.crop_size, self.crop_size):
            raise ApiError.invalid(
                field,
                f"expected an aligned {self.crop_size}x{self.crop_size} face crop, got "
                f"{width}x{height}",
                kind="value_error.crop_size",
            )

    async def embed_with_norms(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Unit embeddings of aligned crops and the recognizer's norms before normalization, in
        chunks of the runner's batch size, concurrently (so other requests' crops can share the
        passes)."""
        if len(crops) == 0:
            return np.zeros((0, 0), np.float32), np.zeros(0, np.float32)
        if len(crops) <= self.embed_chunk:
            raw = await self.backend.embed(crops)
        else:
            chunks = [
                crops[i : i + self.embed_chunk] for i in range(0, len(crops), self.embed_chunk)
            ]
            raw = np.concatenate(await asyncio.gather(*(self.backend.embed(c) for c in chunks)))
        norms = np.linalg.norm(raw, axis=1).astype(np.float32)
        # a zero row stays zero instead of becoming NaN
        return raw / np.maximum(norms, np.finfo(np.float32).tiny)[:, np.newaxis], norms


async def _in_order(calls: Iterable[Awaitable[T]]) -> list[T]:
    """Every call's result, run concurrently; the first failure in the calls' order answers for
    them all, once every call has ended (a sibling cut short would cost its decoder a restart)."""
    done = await asyncio.gather(*calls, return_exceptions=True)
    for outcome in done:
        if isinstance(outcome, BaseException):
            raise outcome
    return done  # type: ignore[return-value] - no exception among them


def _measures(
    faces: np.ndarray, crops: np.ndarray, norms: np.ndarray, norm_reference: float
) -> np.ndarray:
    rows = [
        quality.measure(face, crop, float(norm), norm_reference)
        for face, crop, norm in zip(faces, crops, norms, strict=True)
    ]
    return np.array(rows, np.float32).reshape(len(faces), len(quality.MEASURES))
