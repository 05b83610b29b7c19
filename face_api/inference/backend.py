"""The pipeline's two inference backends, side by side, both calling the models directly
(``models.py``): ``EngineBackend`` runs each call at once (benchmarks, tests); ``BatchedBackend``,
the runner's, puts each model behind a ``ContinuousBatcher`` so that concurrent requests share
forward passes. Without BentoML: the runner passes in what counts each pass's rows (its
Prometheus histogram's ``observe``).

Continuous batching: one forward pass for everything that queued while the last one ran.

Why not BentoML's adaptive batching (``batchable=True``): its dispatcher models a call's cost as
linear in the number of queued requests and waits for batch partners by the mean of its past
waits. Our requests range from 1 crop to 64, so after a few large ones it made a lone 1-crop
request wait 1.5 s, and under 8 concurrent crowd requests it shed 26 requests with 503
(benchmarks/README.md). This batcher never waits when idle and never sheds: a request is queued
until a pass is free (bounded by the service's request timeout), and every pass takes all that
queued, up to ``max_rows``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from face_api.inference.models import BatchedDetector, BatchedRecognizer
from face_api.ops.context import current

log = logging.getLogger("face_api.runner")


class EngineBackend:
    """The models called at once, a call at a time: the same pipeline without batching across
    requests, for benchmarks and tests."""

    def __init__(self, detector: BatchedDetector, recognizer: BatchedRecognizer) -> None:
        self.detector = detector
        self.recognizer = recognizer

    async def detect(self, canvases: np.ndarray) -> list[np.ndarray]:
        with current().stage("detect"):
            return self.detector.detect(canvases)

    async def embed(self, crops: np.ndarray) -> np.ndarray:
        with current().stage("embed"):
            return self.recognizer.features(crops)


class BatchedBackend:
    """Each model behind one continuous batcher.

    Where detection passes take several images (CUDA), the batch thread only runs forward
    passes and each image's detections are decoded (anchors, NMS) on the image threads, beside
    the next pass; with one image a pass (CPU) the batch thread decodes it at once, which is
    cheaper than a thread hop.

    ``on_detect_batch`` and ``on_embed_batch`` get the number of rows (canvases, crops) of each
    pass.
    """

    def __init__(
        self,
        detector: BatchedDetector,
        recognizer: BatchedRecognizer,
        pool: Executor,
        *,
        on_detect_batch: Callable[[int], None] | None = None,
        on_embed_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.pool = pool
        self.decode = detector.decode
        self.decode_on_pool = detector.max_batch > 1
        self.detector = ContinuousBatcher(
            "detect",
            detector.forward_images if self.decode_on_pool else detector.detect,
            detector.max_batch,
            on_batch=on_detect_batch,
        )
        self.recognizer = ContinuousBatcher(
            "embed",
            recognizer.features,  # raw: the pipeline normalizes, keeping the norms
            recognizer.max_batch,
            on_batch=on_embed_batch,
        )

    async def detect(self, canvases: np.ndarray) -> list[np.ndarray]:
        found = await self.detector.submit(canvases)
        if not self.decode_on_pool:
            return found
        loop = asyncio.get_running_loop()
        with current().stage("nms"):
            decoding = [loop.run_in_executor(self.pool, self.decode, o) for o in found]
            return list(await asyncio.gather(*decoding))

    async def embed(self, crops: np.ndarray) -> np.ndarray:
        return await self.recognizer.submit(crops)


@dataclass(eq=False)
class _Job:
    rows: Any  # an array, or a list with one entry per row
    future: asyncio.Future[Any]
    queued: float
    started: float = 0.0
    ended: float = 0.0


class ContinuousBatcher:
    """Runs ``run_batch`` (rows in, rows out; blocking) on a thread of its own, one pass at a time.

    ``run_batch`` may answer an array or a list with one entry per row. ``name`` names the
    stages the caller's request gets: ``{name}-queue`` (waiting for a pass) and ``{name}`` (the
    pass its rows ran in).
    """

    def __init__(
        self,
        name: str,
        run_batch: Callable[[np.ndarray], Any],
        max_rows: int,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.name = name
        self.run_batch = run_batch
        self.max_rows = max_rows
        self.on_batch = on_batch
        self._queue: deque[_Job] = deque()
        # One thread of its own runs every pass: passes never overlap, and none waits behind
        # other work in the event loop's shared default pool.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"{name}-passes")
        self._worker: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None

    async def submit(self, rows: np.ndarray) -> Any:
        """The outputs for ``rows``, computed in some pass together with other requests' rows."""
        context = current()
        loop = asyncio.get_running_loop()
        if self._wake is None:
            self._wake = asyncio.Event()
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._work())
        job = _Job(rows, loop.create_future(), time.perf_counter())
        self._queue.append(job)
        self._wake.set()
        out = await job.future
        context.add(f"{self.name}-queue", (job.started - job.queued) * 1000)
        context.add(self.name, (job.ended - job.started) * 1000)
        return out

    def _next_batch(self) -> list[_Job]:
        jobs = [self._queue.popleft()]
        rows = len(jobs[0].rows)
        while self._queue and rows + len(self._queue[0].rows) <= self.max_rows:
            job = self._queue.popleft()
            rows += len(job.rows)
            jobs.append(job)
        return [job for job in jobs if not job.future.done()]  # skip callers that gave up

    async def _work(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                jobs = self._next_batch()
                if not jobs:
                    continue
                batch = (
                    np.concatenate([job.rows for job in jobs]) if len(jobs) > 1 else jobs[0].rows
                )
                if self.on_batch is not None:
                    self.on_batch(len(batch))
                started = time.perf_counter()
                try:
                    out = await loop.run_in_executor(self._thread, self.run_batch, batch)
                except Exception as exc:  # noqa: BLE001 - every waiting caller gets the error
                    log.exception("batch of %d rows failed", len(batch))
                    for job in jobs:
                        if not job.future.done():
                            job.future.set_exception(exc)
                    continue
                ended = time.perf_counter()
                start = 0
                for job in jobs:
                    job.started, job.ended = started, ended
                    if not job.future.done():
                        job.future.set_result(out[start : start + len(job.rows)])
                    start += len(job.rows)
