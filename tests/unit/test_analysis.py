"""The face pipeline's hold on decoded pixels (face_api/pipeline/analysis.py): concurrent
requests never hold more decoded pixels than the budget; past it, a 429 before any decode; a
request gives its pixels back as soon as its faces are cut out."""

from __future__ import annotations

import asyncio

import cv2
import numpy as np
import pytest

from face_api.ops.errors import ApiError
from face_api.ops.runner_hop import FaceQuery
from face_api.pipeline.analysis import FacePipeline, PixelBudget
from face_api.pipeline.decoders import ImageDecoders
from tests.fakes import HeldDetector, HeldRecognizer


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
            settle(300)  # fewer: what it did not use is given back at once
            assert budget.held == 900
        assert budget.held == 600
    assert budget.held == 0
    with pytest.raises(RuntimeError), budget.holding(1000):
        raise RuntimeError("a failed request")
    assert budget.held == 0


@pytest.fixture(scope="module")
def decoders():
    pool = ImageDecoders(2, 400_000)
    yield pool
    pool.close()


def test_concurrent_requests_past_the_budget_are_refused_before_decoding(decoders, monkeypatch):
    decoded: list[str] = []
    decode = ImageDecoders.decode

    async def counted(pool, data, field, header):
        decoded.append(field)
        return await decode(pool, data, field, header)

    monkeypatch.setattr(ImageDecoders, "decode", counted)

    async def scenario() -> None:
        backend = HeldDetector()
        pipeline = FacePipeline(
            backend,
            decoders,
            det_size=64,
            crop_size=112,
            max_pixels=400_000,
            max_pixels_in_flight=800_000,
        )
        big = [("image", png(800, 500))]  # 400,000 pixels

        def analyze(images: list) -> asyncio.Task:
            coro = pipeline.analyze(images, FaceQuery(max_faces=10, embed=False))
            return asyncio.create_task(coro)

        async def detecting(requests: int) -> None:
            async with backend.entered:
                await backend.entered.wait_for(lambda: backend.requests == requests)

        first = analyze(big)
        await detecting(1)
        assert pipeline.budget.held == 400_000 and decoded == ["image"]
        with pytest.raises(ApiError) as refused:  # 400,000 + 2 x 400,000 > 800,000
            await pipeline.analyze(
                [("image1", big[0][1]), ("image2", big[0][1])], FaceQuery(max_faces=10)
            )
        assert refused.value.status == 429
        assert decoded == ["image"]  # neither of its images was decoded
        second = analyze(big)  # fits beside the first
        await detecting(2)
        assert pipeline.budget.held == 800_000
        backend.release.set()
        assert [len(a.faces) for a in await first] == [0]
        assert [len(a.faces) for a in await second] == [0]
        assert pipeline.budget.held == 0
        again = await pipeline.analyze(big + big, FaceQuery(max_faces=10, embed=False))
        assert len(again) == 2

    asyncio.run(scenario())


def test_a_request_gives_its_pixels_back_once_its_faces_are_cut_out(decoders):
    async def scenario() -> None:
        backend = HeldRecognizer()
        pipeline = FacePipeline(backend, decoders, det_size=64, crop_size=112, max_pixels=400_000)
        task = asyncio.create_task(
            pipeline.analyze([("image", png(800, 500))], FaceQuery(max_faces=10))
        )
        await backend.embedding.wait()
        assert pipeline.budget.held == 0  # while its embedding waits for the recognizer
        backend.release.set()
        (found,) = await task
        assert (found.height, found.width, len(found.faces)) == (500, 800, 1)

    asyncio.run(scenario())
