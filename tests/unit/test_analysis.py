"""The face pipeline's hold on decoded pixels (face_api/pipeline/analysis.py): concurrent
requests never hold more decoded pixels than the budget; past it, a 429 before any decode."""

from __future__ import annotations

import asyncio

import cv2
import numpy as np
import pytest

from face_api.ops.errors import ApiError
from face_api.pipeline.analysis import FacePipeline, FaceQuery, PixelBudget


def png(width: int, height: int) -> bytes:
    ok, data = cv2.imencode(".png", np.zeros((height, width, 3), np.uint8))
    assert ok
    return data.tobytes()


def test_a_hold_past_the_budget_is_a_429_and_every_hold_is_given_back():
    budget = PixelBudget(1000)
    with budget.holding(600):
        with pytest.raises(ApiError) as refused, budget.holding(401):
            pass
        assert refused.value.status == 429 and "retry later" in refused.value.message
        with budget.holding(400) as settle:
            settle(450)  # decoded more than the header told: counted, never refused
            assert budget.held == 1050
        assert budget.held == 600
    assert budget.held == 0
    with pytest.raises(RuntimeError), budget.holding(1000):
        raise RuntimeError("a failed request")
    assert budget.held == 0


class HeldDetector:
    """Detects nothing until released, so a request keeps its pixels as long as the test says."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def detect(self, canvases: np.ndarray) -> list[np.ndarray]:
        self.entered.set()
        await self.release.wait()
        return [np.zeros((0, 15), np.float32) for _ in canvases]

    async def embed(self, crops: np.ndarray) -> np.ndarray:
        raise AssertionError("no face, nothing to embed")


def test_concurrent_requests_past_the_budget_are_refused_before_decoding():
    async def scenario() -> None:
        backend = HeldDetector()
        pipeline = FacePipeline(
            backend, det_size=64, crop_size=112, max_pixels=400_000, max_pixels_in_flight=800_000
        )
        big = [("image", png(800, 500))]  # 400,000 pixels

        def analyze(images: list) -> asyncio.Task:
            coro = pipeline.analyze(images, FaceQuery(10, embed=False))
            return asyncio.create_task(coro)

        first = analyze(big)
        await backend.entered.wait()
        assert pipeline.budget.held == 400_000
        with pytest.raises(ApiError) as refused:  # 400,000 + 2 x 400,000 > 800,000
            await pipeline.analyze(big + big, FaceQuery(10, embed=False))
        assert refused.value.status == 429
        second = analyze(big)  # fits beside the first
        await asyncio.sleep(0)  # one turn of the loop: the task starts and takes its hold
        assert pipeline.budget.held == 800_000
        backend.release.set()
        assert [len(a.faces) for a in await first] == [0]
        assert [len(a.faces) for a in await second] == [0]
        assert pipeline.budget.held == 0
        again = await pipeline.analyze(big + big, FaceQuery(10, embed=False))
        assert len(again) == 2

    asyncio.run(scenario())
