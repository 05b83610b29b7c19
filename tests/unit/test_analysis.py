"""The face pipeline (face_api/pipeline/analysis.py) on a fake backend, with the real decode
processes: what it asks of the models (one detection pass for a request's images, one
recognition batch for all their faces) and what it answers (faces in image pixels, clipped,
sorted and capped as asked; each image's own embeddings and quality measures). And its hold on
decoded pixels: concurrent requests never hold more than the budget; past it, a 429 before any
decode; a request gives its pixels back as soon as its faces are cut out."""

from __future__ import annotations

import asyncio

import cv2
import numpy as np
import pytest

from face_api.ops.errors import ApiError
from face_api.ops.runner_hop import (
    BOX,
    DETECTION_WIDTH,
    LANDMARKS,
    SCORE,
    DetectSortType,
    FaceQuery,
)
from face_api.pipeline.analysis import FacePipeline, PixelBudget
from face_api.pipeline.decoders import ImageDecoders
from face_api.pipeline.quality import MEASURES
from tests.fakes import CannedBackend, HeldDetector, HeldRecognizer

DET_SIZE = 64  # the canvas the fake detector "sees"


def png(width: int, height: int, value: int = 0) -> bytes:
    ok, data = cv2.imencode(".png", np.full((height, width, 3), value, np.uint8))
    assert ok
    return data.tobytes()


def rows(*boxes: tuple[float, float, float, float, float]) -> np.ndarray:
    """Detection rows of (x1, y1, x2, y2, score), landmarks spread over each box's upper half
    and out past its right edge (landmarks are never clipped)."""
    out = np.zeros((len(boxes), DETECTION_WIDTH), np.float32)
    for row, (x1, y1, x2, y2, score) in zip(out, boxes, strict=True):
        row[BOX], row[SCORE] = (x1, y1, x2, y2), score
        w, h = x2 - x1, y2 - y1
        row[LANDMARKS] = np.array(
            [[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [1.2, 0.8]], np.float32
        ).ravel() * np.tile([w, h], 5) + np.tile([x1, y1], 5)
    return out


# A wide 800x400 photo, all grey 50: letterboxed at 64/800, its canvas pixels are 12.5 of its own.
WIDE = ("image", png(800, 400, 50))
WIDE_SCALE = 12.5
WIDE_FACES = rows(
    (4, 4, 20, 20, 0.9),  # 200x200 in the photo
    (30, 2, 40, 12, 0.95),  # 125x125
    (56, 20, 70, 36, 0.6),  # 175x200, of which 100x150 inside the photo
)
# A tall 300x600 photo, all grey 200: letterboxed at 64/600.
TALL = ("image2", png(300, 600, 200))
TALL_FACES = rows((8, 16, 24, 32, 0.8))


def unit(brightest: float) -> np.ndarray:
    raw = np.array([brightest, 10.0, 0.0, 0.0])
    return raw / np.linalg.norm(raw)


def analyzed(decoders, images, query, detections, **options):
    backend = CannedBackend(detections)
    pipeline = FacePipeline(
        backend, decoders, det_size=DET_SIZE, crop_size=112, max_pixels=400_000, **options
    )
    return asyncio.run(pipeline.analyze(images, query)), backend


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


# -- what the pipeline answers ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sort_type", "order"),
    [
        # by area of the box inside the photo: the third is 175x200, but only 100x150 of it
        (DetectSortType.AREA, [0, 1]),
        (DetectSortType.CONFIDENCE, [1, 0]),
        (DetectSortType.LEFT_TO_RIGHT, [0, 1]),
    ],
)
def test_faces_come_back_in_image_pixels_clipped_sorted_and_capped(decoders, sort_type, order):
    query = FaceQuery(max_faces=2, sort_type=sort_type, embed=False)
    (found,), backend = analyzed(decoders, [WIDE], query, [WIDE_FACES])
    assert (found.height, found.width) == (400, 800)
    expected = WIDE_FACES[order] * np.float32(WIDE_SCALE)  # canvas pixels to the photo's
    expected[:, BOX] = np.clip(expected[:, BOX].reshape(-1, 2, 2), 0, [800, 400]).reshape(-1, 4)
    expected[:, SCORE] = WIDE_FACES[order, SCORE]  # the score as detected
    np.testing.assert_allclose(found.faces, expected, rtol=1e-6)
    assert found.embeddings is None and found.quality is None
    assert backend.embed_passes == []  # nothing embedded that was not asked for
    [canvases] = backend.detect_passes
    assert canvases.shape == (1, DET_SIZE, DET_SIZE, 3)


def test_the_clipped_box_is_what_is_sorted_and_landmarks_stay_as_detected(decoders):
    (found,), _ = analyzed(decoders, [WIDE], FaceQuery(max_faces=3, embed=False), [WIDE_FACES])
    last = found.faces[2]
    assert last[BOX].tolist() == pytest.approx([700, 250, 800, 400])  # x2 and y2 clipped
    assert last[LANDMARKS].max() > 800  # the landmark past the photo's edge is kept


def test_a_requests_images_share_one_detection_pass_and_one_recognition_batch(decoders):
    query = FaceQuery(max_faces=10)
    (wide, tall), backend = analyzed(decoders, [WIDE, TALL], query, [WIDE_FACES, TALL_FACES])
    [canvases] = backend.detect_passes
    assert canvases.shape == (2, DET_SIZE, DET_SIZE, 3)
    [crops] = backend.embed_passes
    assert crops.shape == (4, 112, 112, 3)
    assert (tall.height, tall.width) == (600, 300)
    np.testing.assert_allclose(tall.faces[0, BOX], [75, 150, 225, 300], rtol=1e-5)
    # each image's own faces, unit length, cut from its own pixels
    np.testing.assert_allclose(wide.embeddings, np.tile(unit(50), (3, 1)), rtol=1e-6)
    np.testing.assert_allclose(tall.embeddings, [unit(200)], rtol=1e-6)


def test_quality_embeds_the_faces_for_its_measures_without_answering_embeddings(decoders):
    query = FaceQuery(max_faces=10, embed=False, quality=True)
    (found,), backend = analyzed(decoders, [WIDE], query, [WIDE_FACES])
    assert found.embeddings is None and len(backend.embed_passes) == 1
    assert found.quality.shape == (3, len(MEASURES))
    norms = found.quality[:, MEASURES.index("embedding_norm")]
    np.testing.assert_allclose(norms, np.hypot(50, 10), rtol=1e-6)


def test_without_a_face_nothing_is_embedded(decoders):
    empty = np.zeros((0, DETECTION_WIDTH), np.float32)
    found, backend = analyzed(decoders, [WIDE, TALL], FaceQuery(max_faces=5), [empty, empty])
    assert backend.embed_passes == []
    assert [(a.faces.shape, a.embeddings.shape) for a in found] == [((0, 15), (0, 0))] * 2


def test_many_faces_are_embedded_in_chunks_of_the_recognizers_batch_in_order(decoders):
    query = FaceQuery(max_faces=10)
    (wide, tall), backend = analyzed(
        decoders, [WIDE, TALL], query, [WIDE_FACES, TALL_FACES], embed_chunk=3
    )
    assert [len(p) for p in backend.embed_passes] == [3, 1]
    np.testing.assert_allclose(wide.embeddings, np.tile(unit(50), (3, 1)), rtol=1e-6)
    np.testing.assert_allclose(tall.embeddings, [unit(200)], rtol=1e-6)


def test_aligned_crops_are_embedded_as_they_are_and_must_be_the_recognizers_size(decoders):
    pipeline = FacePipeline(
        CannedBackend([]), decoders, det_size=DET_SIZE, crop_size=112, max_pixels=400_000
    )
    crops = [("image", png(112, 112, 7)), ("image2", png(112, 112, 90))]
    np.testing.assert_allclose(
        asyncio.run(pipeline.embed_crops(crops)), [unit(7), unit(90)], rtol=1e-6
    )
    with pytest.raises(ApiError) as refused:
        asyncio.run(pipeline.embed_crops([crops[0], ("image2", png(100, 112))]))
    assert (refused.value.status, refused.value.field) == (422, "image2")
    assert refused.value.kind == "value_error.crop_size" and "got 100x112" in refused.value.message
