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
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from face_api.ops.timing import Timings

log = logging.getLogger("face_api.runner")


@dataclass(eq=False)
class _Job:
    rows: Any  # an array, or a list with one entry per row
    future: asyncio.Future[Any]
    queued: float = field(default_factory=time.perf_counter)
    started: float = 0.0
    ended: float = 0.0


class ContinuousBatcher:
    """Runs ``run_batch`` (rows in, rows out; blocking) on a thread of its own, one pass at a time.

    ``run_batch`` may answer an array or a list with one entry per row. ``name`` names the
    stages a caller's ``Timings`` gets: ``{name}-queue`` (waiting for a pass) and ``{name}``
    (the pass its rows ran in).
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

    async def submit(self, rows: np.ndarray, timings: Timings | None = None) -> Any:
        """The outputs for ``rows``, computed in some pass together with other requests' rows."""
        loop = asyncio.get_running_loop()
        if self._wake is None:
            self._wake = asyncio.Event()
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._work())
        job = _Job(rows, loop.create_future())
        self._queue.append(job)
        self._wake.set()
        out = await job.future
        if timings is not None:
            timings.add(f"{self.name}-queue", (job.started - job.queued) * 1000)
            timings.add(self.name, (job.ended - job.started) * 1000)
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
