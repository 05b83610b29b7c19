"""What crosses the gallery hop, carried as BentoML carries a call to the real gallery service's
methods: the request's context goes with every call, and the store's own types come back."""

from __future__ import annotations

import numpy as np
import pytest

from face_api.galleries.store import (
    Face,
    FaceList,
    GalleryInfo,
    Match,
    SubjectCount,
    SubjectList,
)
from face_api.ops.bentoml_private import carried_answer, carried_call
from face_api.ops.context import CallContext
from face_api.ops.errors import ApiError, Reply

CONTEXT = CallContext(id="req-1", deadline_s=9.5)


@pytest.fixture(scope="module")
def service():
    from runners.gallery_service import GalleryStoreService

    return GalleryStoreService


def test_a_search_gets_its_features_and_the_requests_context(service):
    features = np.arange(2 * 512, dtype=np.float32).reshape(2, 512)
    received, _ = carried_call(
        service.apis["search"],
        pack="buffalo_sc_int8",
        dimension=512,
        gallery="door",
        features=features,
        limit=5,
        request=CONTEXT,
        threshold=None,
    )
    assert received["request"] == CONTEXT and received["limit"] == 5
    assert received["features"].dtype == np.float32
    np.testing.assert_array_equal(received["features"], features)


@pytest.mark.parametrize(
    ("method", "result"),
    [
        ("search", [[Match("a" * 32, "Ada", {"desk": 7}, 0.91), Match("b" * 32, "Bo", None, 0.4)]]),
        ("verify", Match("a" * 32, "Ada", None, 0.88)),
        ("galleries", [GalleryInfo("door", "buffalo_sc_int8", 512, 3)]),
        ("subjects", SubjectList([SubjectCount("Ada", 2), SubjectCount("Bo", 1)], 7)),
        ("faces", FaceList([Face("a" * 32, "Ada", {"n": [1, 2]})], 1)),
        ("enroll", ["a" * 32, "b" * 32]),
        ("delete_face", 1),
        ("delete_subject", 2),
        ("delete_gallery", 3),
    ],
)
def test_each_method_answers_the_stores_own_types(service, method, result):
    got, _ = carried_answer(service.apis[method], Reply(result=result, timings={"service": 2.5}))
    assert got.unwrap() == result  # dataclasses equal field by field, and of the same type
    assert got.timings == {"service": 2.5}


def test_a_store_error_crosses_as_the_api_error_it_was(service):
    refused = ApiError(409, "gallery 'door' holds 'Alice', which looks the same")
    got, _ = carried_answer(service.apis["search"], Reply(error=refused.to_wire()))
    with pytest.raises(ApiError) as raised:
        got.unwrap()
    assert raised.value.status == 409 and raised.value.body() == refused.body()


def test_a_store_that_cannot_be_opened_is_the_replys_error_under_the_requests_context(service):
    """The store is opened inside the reply: a database that does not answer as it opens is the
    call's 503, never a 500 from outside it."""
    from face_api.ops.context import current

    seen = []

    def unreachable(pack: str, dimension: int) -> None:
        seen.append(current().id)
        raise ApiError.unavailable("the gallery database does not answer")

    replica = object.__new__(service.inner)
    replica._store = unreachable
    reply = replica._serve(CONTEXT, "buffalo_sc_int8", 512, lambda store: store.galleries())
    assert seen == ["req-1"]  # served under the caller's request id
    with pytest.raises(ApiError) as raised:
        reply.unwrap()
    assert raised.value.status == 503 and "service" in reply.timings
