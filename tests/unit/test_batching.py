"""The continuous batcher: no wait when idle, batches under load, errors reach every caller."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from face_api.inference.batching import ContinuousBatcher


def test_lone_request_runs_at_once():
    batches = []
    batcher = ContinuousBatcher(
        "double", lambda rows: rows * 2, max_rows=8, on_batch=batches.append
    )

    async def main():
        t0 = time.perf_counter()
        out = await batcher.submit(np.arange(3))
        return out, time.perf_counter() - t0

    out, took = asyncio.run(main())
    np.testing.assert_array_equal(out, [0, 2, 4])
    assert batches == [3] and took < 0.5


def test_requests_queued_during_a_pass_share_the_next_one():
    gate = threading.Event()
    batches = []

    def slow_double(rows):
        gate.wait(5)
        return rows * 2

    batcher = ContinuousBatcher("double", slow_double, max_rows=5, on_batch=batches.append)

    async def main():
        first = asyncio.create_task(batcher.submit(np.array([1])))
        await asyncio.sleep(0.05)  # the first pass is now running (blocked on the gate)
        others = [asyncio.create_task(batcher.submit(np.array([i, i]))) for i in (10, 20, 30)]
        await asyncio.sleep(0.05)
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


def test_callers_learn_how_long_they_queued_and_how_long_their_pass_ran():
    from face_api.ops.timing import Timings

    gate = threading.Event()

    def slow(rows):
        gate.wait(5)
        time.sleep(0.05)
        return rows

    batcher = ContinuousBatcher("embed", slow, max_rows=8)
    first, second = Timings(), Timings()

    async def main():
        running = asyncio.create_task(batcher.submit(np.array([1]), first))
        await asyncio.sleep(0.05)
        waiting = asyncio.create_task(batcher.submit(np.array([2]), second))
        await asyncio.sleep(0.1)  # `second` queues while the first pass is held
        gate.set()
        await running
        await waiting

    asyncio.run(main())
    assert first.ms["embed-queue"] < 20 and 140 <= first.ms["embed"] < 1000
    assert 90 <= second.ms["embed-queue"] < 1000 and 50 <= second.ms["embed"] < 1000
