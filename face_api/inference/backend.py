"""The runner's inference backend: the engine behind one continuous batcher per model.

Without BentoML: the runner (``runners/insightface_runner.py``) passes in what counts each pass's
rows (its Prometheus histogram's ``observe``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor

import numpy as np

from face_api.inference.batching import ContinuousBatcher
from face_api.inference.engine import FaceEngine
from face_api.ops.timing import Timings


class BatchedBackend:
    """The engine behind one continuous batcher per model, as the pipeline's backend.

    Where detection passes take several images (CUDA), the batch thread only runs forward
    passes and each image's detections are decoded (anchors, NMS) on the image threads, beside
    the next pass; with one image a pass (CPU) the batch thread decodes it at once, which is
    cheaper than a thread hop.

    ``on_detect_batch`` and ``on_embed_batch`` get the number of rows (canvases, crops) of each
    pass.
    """

    def __init__(
        self,
        engine: FaceEngine,
        pool: Executor,
        *,
        on_detect_batch: Callable[[int], None] | None = None,
        on_embed_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.pool = pool
        self.decode_on_pool = engine.detect_max_batch > 1
        self.detector = ContinuousBatcher(
            "detect",
            engine.forward_canvases if self.decode_on_pool else engine.detect,
            engine.detect_max_batch,
            on_batch=on_detect_batch,
        )
        self.decode = engine.decode
        self.recognizer = ContinuousBatcher(
            "embed",
            engine.features,  # raw: the pipeline normalizes, keeping the norms
            engine.embed_max_batch,
            on_batch=on_embed_batch,
        )

    async def detect(self, canvases: np.ndarray, timings: Timings) -> list[np.ndarray]:
        found = await self.detector.submit(canvases, timings)
        if not self.decode_on_pool:
            return found
        loop = asyncio.get_running_loop()
        with timings.stage("nms"):
            decoding = [loop.run_in_executor(self.pool, self.decode, o) for o in found]
            return list(await asyncio.gather(*decoding))

    async def embed(self, crops: np.ndarray, timings: Timings) -> np.ndarray:
        return await self.recognizer.submit(crops, timings)
