"""The runner's methods as the API workers call them (face_api/http/runner_client.py): the
request's context goes with each call, its query within the server's cap, and the runner's reply
comes back unwrapped, its stages joined to the request's."""

from __future__ import annotations

import asyncio
import time

from face_api.http.runner_client import RunnerClient
from face_api.ops.context import CallContext, RequestContext, serving
from face_api.ops.runner_hop import DetectSortType, FaceQuery
from tests.fakes import RunnerHandle

IMAGE = ("image", b"encoded")


def test_a_call_carries_the_context_and_the_capped_query_and_counts_the_hop():
    runner = RunnerHandle()
    request = RequestContext(id="abc", deadline_s=60, started=time.perf_counter() - 10)
    query = FaceQuery(max_faces=500, sort_type=DetectSortType.CONFIDENCE, embed=False, quality=True)
    with serving(request):
        (found,) = asyncio.run(RunnerClient(runner, max_faces_cap=100).analyze([IMAGE], query))
    assert (found.height, found.width, found.faces.shape) == (4, 3, (0, 15))
    [call] = runner.calls
    # the time left to the request: the runner's deadline is the same moment as this one's
    carried = call["request"]
    assert isinstance(carried, CallContext)
    assert carried.id == "abc" and 49 < carried.deadline_s <= 50
    assert call["query"] == query.model_copy(update={"max_faces": 100})
    assert call["images"] == [IMAGE]
    assert set(request.ms) == {"hop", "decode"}  # the service's own stage is not reported
    assert request.ms["decode"] == 2.0 and request.ms["hop"] > 0


def test_a_query_within_the_cap_goes_as_it_is():
    runner = RunnerHandle()
    query = FaceQuery(max_faces=7, sort_type=DetectSortType.LEFT_TO_RIGHT)
    asyncio.run(RunnerClient(runner, max_faces_cap=100).analyze([IMAGE, IMAGE], query))
    assert runner.calls[0]["query"] is query
