"""What crosses the runner hop (face_api/ops/runner_hop.py), carried as BentoML carries a call to
the real runner's methods: each side gets the other's typed values, the arrays as they were."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from face_api.ops.bentoml_private import carried_answer, carried_call
from face_api.ops.context import CallContext
from face_api.ops.errors import ApiError, Reply
from face_api.ops.runner_hop import (
    DETECTION_WIDTH,
    Analysis,
    DetectSortType,
    Embeddings,
    FaceQuery,
    RunnerInfo,
)
from tests.fakes import RUNNER_INFO

JPEG = b"\xff\xd8\xff" + bytes(range(256)) * 128  # encoded bytes, as a client sent them


@pytest.fixture(scope="module")
def runner(imported_pack):
    from runners.insightface_runner import InsightFaceRunner

    return InsightFaceRunner


def test_analyze_gets_the_images_query_and_context_as_sent(runner):
    query = FaceQuery(max_faces=3, sort_type=DetectSortType.LEFT_TO_RIGHT, quality=True)
    context = CallContext(id="abc", deadline_s=12.5)
    images = [("image1", JPEG), ("image2", JPEG[:100])]
    received, sent = carried_call(
        runner.apis["analyze"], images=images, query=query, request=context
    )
    assert received == {"images": images, "query": query, "request": context}
    assert type(received["query"].sort_type) is DetectSortType
    assert sent < len(JPEG) + 100 + 1024  # the encoded bytes and little else


def test_analyze_answers_each_images_arrays_as_they_were(runner):
    faces = np.arange(2 * DETECTION_WIDTH, dtype=np.float32).reshape(2, DETECTION_WIDTH)
    embeddings = np.eye(2, 512, dtype=np.float32)
    measures = np.ones((2, 8), np.float32)
    no_face = np.zeros((0, DETECTION_WIDTH), np.float32)
    answer = Reply(
        result=[
            Analysis(faces=faces, embeddings=embeddings, height=480, width=640, quality=measures),
            Analysis(faces=no_face, height=10, width=20),
        ],
        timings={"detect": 11.0},
    )
    got, _ = carried_answer(runner.apis["analyze"], answer)
    first, second = got.unwrap()
    assert isinstance(first, Analysis) and (first.height, first.width) == (480, 640)
    for name, array in (("faces", faces), ("embeddings", embeddings), ("quality", measures)):
        assert getattr(first, name).dtype == np.float32
        np.testing.assert_array_equal(getattr(first, name), array)
    assert second.faces.shape == (0, DETECTION_WIDTH) and second.embeddings is None
    assert got.timings == {"detect": 11.0}


def test_an_error_crosses_as_the_api_error_it_was(runner):
    refused = ApiError.invalid("image2", "not an image", "value_error.image_format")
    got, _ = carried_answer(runner.apis["analyze"], Reply(error=refused.to_wire()))
    with pytest.raises(ApiError) as raised:
        got.unwrap()
    assert (raised.value.status, raised.value.field, raised.value.kind) == (
        422,
        "image2",
        "value_error.image_format",
    )
    assert raised.value.body() == refused.body()


def test_embed_crops_and_info_answer_their_models(runner):
    vectors = np.full((3, 512), 0.5, np.float32)
    got, _ = carried_answer(runner.apis["embed_crops"], Reply(result=Embeddings(vectors=vectors)))
    np.testing.assert_array_equal(got.unwrap().vectors, vectors)
    info, _ = carried_answer(runner.apis["info"], RUNNER_INFO)
    assert isinstance(info, RunnerInfo) and info.model_dump() == RUNNER_INFO.model_dump()


@pytest.mark.parametrize(
    "faces",
    [
        np.zeros((1, DETECTION_WIDTH), np.float64),  # another dtype
        np.zeros((1, 14), np.float32),  # another layout
        np.zeros(DETECTION_WIDTH, np.float32),  # one row, not rows
        [[0.0] * DETECTION_WIDTH],  # not an array
    ],
)
def test_an_analysis_holds_only_float32_rows_of_the_layout(faces):
    with pytest.raises(ValidationError):
        Analysis(faces=faces, height=1, width=1)
