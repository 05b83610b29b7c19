"""The gallery calls run in an API worker's own process (``InProcessCalls``, as on a Milvus
server), on a real embedded Milvus Lite: the same answers and errors as through the gallery
service, on the pool's threads, never the event loop's, and under the request's context."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from face_api.galleries.calls import GalleryCalls
from face_api.galleries.store import Match
from face_api.galleries.store_client import GalleryStoreClient, InProcessCalls
from face_api.ops.context import CallContext, RequestContext, serving
from face_api.ops.errors import ApiError, Reply
from face_api.ops.settings import Settings

PACK, DIM = "buffalo_sc_int8", 512


class Served:
    """What the client needs of ``ServedModel``: the served pack's gallery key."""

    async def gallery_key(self) -> tuple[str, int]:
        return PACK, DIM


class RecordingCalls(GalleryCalls):
    """Notes the thread and the request id each store call ran under."""

    seen: list[tuple[str, str | None]] = []

    def _store(self, pack: str, dimension: int):
        from face_api.ops.context import current

        self.seen.append((threading.current_thread().name, current().id))
        return super()._store(pack, dimension)


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> GalleryStoreClient:
    settings = Settings(gallery_dir=tmp_path_factory.mktemp("galleries"))
    return GalleryStoreClient(InProcessCalls(RecordingCalls(settings)), Served(), 16384)


def served(context: RequestContext, call):
    async def run():
        with serving(context):
            return await call()

    return asyncio.run(run())


def test_calls_answer_the_stores_types_on_threads_of_their_own(client):
    features = np.random.default_rng(3).standard_normal((2, DIM)).astype(np.float32)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    context = RequestContext(id="req-7")
    ids = served(context, lambda: client.enroll("desk", "Ada", features[:1], {"floor": 2}))
    assert len(ids) == 1 and len(ids[0]) == 32
    (matches,) = served(context, lambda: client.search("desk", features[:1], 3, None))
    assert isinstance(matches[0], Match)
    assert (matches[0].face_id, matches[0].subject, matches[0].metadata) == (
        ids[0],
        "Ada",
        {"floor": 2},
    )
    assert matches[0].score > 0.999
    assert served(context, lambda: client.verify("desk", "Ada", features[1:])).face_id == ids[0]
    assert served(context, lambda: client.subjects("desk", 0, 10)).total == 1
    # every call ran on the pool's threads, under the request's id, and its time is its stages
    assert {name.startswith("gallery") for name, _ in RecordingCalls.seen} == {True}
    assert {request for _, request in RecordingCalls.seen} == {"req-7"}
    assert context.ms["gallery"] > 0 and "gallery-hop" in context.ms


def test_the_stores_refusals_are_raised_as_they_are_through_the_service(client):
    with pytest.raises(ApiError) as unknown:
        served(RequestContext(), lambda: client.subjects("nowhere", 0, 10))
    assert unknown.value.status == 404
    with pytest.raises(ApiError) as refused:
        served(RequestContext(), lambda: client.delete_face("desk", "not-a-face-id"))
    assert refused.value.status == 422


def test_a_call_that_waits_does_not_hold_the_event_loop(tmp_path):
    """A write on a server waits for its visibility: on the pool's thread, while the loop goes
    on (here the loop itself releases the waiting call)."""
    release = threading.Event()
    released: list[bool] = []

    class Waiting(GalleryCalls):
        def galleries(self, pack: str, dimension: int, request: CallContext) -> Reply[list]:
            released.append(release.wait(10))  # False: nobody could release it
            return Reply(result=[])

    async def run():
        calls = InProcessCalls(Waiting(Settings(gallery_dir=tmp_path)))
        waiting = asyncio.ensure_future(
            calls.galleries(pack=PACK, dimension=DIM, request=RequestContext().to_wire())
        )
        await asyncio.sleep(0)  # the call starts
        release.set()
        return await waiting

    assert asyncio.run(run()).result == [] and released == [True]


@pytest.mark.parametrize(
    "failure",
    [KeyError("total"), "milvus-quota"],
    ids=["a bug in the store", "a database error the store does not know"],
)
def test_a_call_that_fails_unexpectedly_is_a_503_never_a_500(tmp_path, failure, caplog):
    from pymilvus import MilvusException

    raised = (
        MilvusException(code=53, message="memory quota exhausted")
        if failure == "milvus-quota"
        else failure
    )

    class Failing:
        def search(self, *args, **kwargs):
            raise raised

    class Broken(GalleryCalls):
        def _store(self, pack: str, dimension: int):
            return Failing()

    client = GalleryStoreClient(
        InProcessCalls(Broken(Settings(gallery_dir=tmp_path))), Served(), 16384
    )
    features = np.ones((1, DIM), dtype=np.float32)
    with pytest.raises(ApiError) as failed:
        served(RequestContext(), lambda: client.search("desk", features, 3, None))
    assert failed.value.status == 503
    said = "memory quota exhausted" if failure == "milvus-quota" else "gallery call failed"
    assert said in caplog.text  # said in the log, with what failed
