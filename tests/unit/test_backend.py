"""The continuous batcher (face_api/inference/backend.py): no wait when idle, batches under load,
errors reach every caller, and each caller's request learns its queue and pass times. Waits are
events, and time is a clock the test moves: nothing here depends on how fast the machine is."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from face_api.inference import backend
from face_api.inference.backend import ContinuousBatcher
from face_api.ops.context import RequestContext, serving


async def in_thread(event: threading.Event) -> None:
    """Until ``event`` is set (by a pass, on the batcher's thread)."""
    await asyncio.get_running_loop().run_in_executor(None, event.wait)


def test_a_lone_request_runs_in_a_pass_of_its_own():
    batches = []
    batcher = ContinuousBatcher(
        "double", lambda rows: rows * 2, max_rows=8, on_batch=batches.append
    )
    out = asyncio.run(batcher.submit(np.arange(3)))
    np.testing.assert_array_equal(out, [0, 2, 4])
    assert batches == [3]


def test_requests_queued_during_a_pass_share_the_next_one():
    running, gate = threading.Event(), threading.Event()
    batches = []

    def held_double(rows):
        running.set()
        gate.wait()
        return rows * 2

    batcher = ContinuousBatcher("double", held_double, max_rows=5, on_batch=batches.append)

    async def main():
        first = asyncio.create_task(batcher.submit(np.array([1])))
        await in_thread(running)  # the first pass runs, held at the gate
        others = [asyncio.create_task(batcher.submit(np.array([i, i]))) for i in (10, 20, 30)]
        await asyncio.sleep(0)  # one turn of the loop: the three are queued
        gate.set()
        return await first, await asyncio.gather(*others)

    first, others = asyncio.run(main())
    np.testing.assert_array_equal(first, [2])
    assert [o.tolist() for o in others] == [[20, 20], [40, 40], [60, 60]]
    assert batches == [1, 4, 2]  # 2+2 fit in 5 rows, the third waits for the next pass


def test_a_failing_pass_fails_its_callers_and_the_next_pass_still_runs():
    calls = []

    def flaky(rows):
        calls.append(len(rows))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return rows

    batcher = ContinuousBatcher("flaky", flaky, max_rows=4)

    async def main():
        with pytest.raises(RuntimeError, match="boom"):
            await batcher.submit(np.array([1]))
        return await batcher.submit(np.array([7]))

    np.testing.assert_array_equal(asyncio.run(main()), [7])


class Clock:
    """``time.perf_counter`` as the test moves it, in seconds."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_each_request_learns_how_long_it_queued_and_how_long_its_pass_ran(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(backend.time, "perf_counter", clock)
    running, gate = threading.Event(), threading.Event()
    passes = []

    def held(rows):
        passes.append(len(rows))
        if len(passes) == 1:
            running.set()
            gate.wait()
            clock.now = 5.0  # the first pass ends at 5 s
        else:
            clock.now = 7.0  # the second at 7 s
        return rows

    batcher = ContinuousBatcher("embed", held, max_rows=8)
    first, second = RequestContext(), RequestContext()

    async def submit(context: RequestContext, rows: np.ndarray) -> None:
        with serving(context):
            await batcher.submit(rows)

    async def main():
        running_task = asyncio.create_task(submit(first, np.array([1])))  # queued and run at 0 s
        await in_thread(running)
        clock.now = 1.0
        waiting = asyncio.create_task(submit(second, np.array([2])))  # queued at 1 s
        await asyncio.sleep(0)  # one turn of the loop: it is queued
        gate.set()
        await running_task
        await waiting

    asyncio.run(main())
    assert first.ms == {"embed-queue": 0.0, "embed": 5000.0}
    assert second.ms == {"embed-queue": 4000.0, "embed": 2000.0}
    assert passes == [1, 1]
