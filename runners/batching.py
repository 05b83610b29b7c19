"""Continuous batching: one forward pass for everything that queued while the last one ran.

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
from collections import deque
from collections.abc import Callable

import numpy as np

log = logging.getLogger("face_api.runner")


class ContinuousBatcher:
    """Runs ``run_batch`` (rows in, rows out; blocking) in a worker thread, one pass at a time."""

    def __init__(
        self,
        run_batch: Callable[[np.ndarray], np.ndarray],
        max_rows: int,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.run_batch = run_batch
        self.max_rows = max_rows
        self.on_batch = on_batch
        self._queue: deque[tuple[np.ndarray, asyncio.Future[np.ndarray]]] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None

    async def submit(self, rows: np.ndarray) -> np.ndarray:
        """The outputs for ``rows``, computed in some pass together with other requests' rows."""
        loop = asyncio.get_running_loop()
        if self._wake is None:
            self._wake = asyncio.Event()
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._work())
        future: asyncio.Future[np.ndarray] = loop.create_future()
        self._queue.append((rows, future))
        self._wake.set()
        return await future

    def _next_batch(self) -> list[tuple[np.ndarray, asyncio.Future[np.ndarray]]]:
        jobs = [self._queue.popleft()]
        rows = len(jobs[0][0])
        while self._queue and rows + len(self._queue[0][0]) <= self.max_rows:
            job = self._queue.popleft()
            rows += len(job[0])
            jobs.append(job)
        return [(r, f) for r, f in jobs if not f.done()]  # skip callers that gave up

    async def _work(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                jobs = self._next_batch()
                if not jobs:
                    continue
                batch = np.concatenate([rows for rows, _ in jobs]) if len(jobs) > 1 else jobs[0][0]
                if self.on_batch is not None:
                    self.on_batch(len(batch))
                try:
                    out = await asyncio.to_thread(self.run_batch, batch)
                except Exception as exc:  # noqa: BLE001 - every waiting caller gets the error
                    log.exception("batch of %d rows failed", len(batch))
                    for _, future in jobs:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                start = 0
                for rows, future in jobs:
                    if not future.done():
                        future.set_result(out[start : start + len(rows)])
                    start += len(rows)
