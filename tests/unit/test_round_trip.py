"""One round trip to an internal service (face_api/http/round_trip.py): the request's context
goes with the call, a dropped keep-alive connection is tried again only where the caller says,
a service that does not answer is the caller's to name, and the reply comes back unwrapped."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import bentoml
import pytest

from face_api.http.round_trip import round_trip
from face_api.ops.context import CallContext, RequestContext, serving
from face_api.ops.errors import SERVICE_STAGE, ApiError, Reply, replying


class Service:
    """A service method that fails its first ``failures`` calls with ``error``, then answers."""

    def __init__(self, failures: int = 0, error: Exception | None = None) -> None:
        self.failures, self.error = failures, error
        self.requests: list[CallContext] = []

    async def method(self, request: CallContext, **arguments: Any) -> Reply[int]:
        self.requests.append(request)
        if len(self.requests) <= self.failures:
            assert self.error is not None
            raise self.error
        with replying(RequestContext.from_wire(request)) as reply:
            if arguments.get("bad"):
                raise ApiError.invalid("image", "not an image", "value_error.image")
            reply.result = arguments["n"] + 1
        return reply


def served(coro: Any) -> tuple[Any, RequestContext]:
    async def main() -> Any:
        with serving(RequestContext(id="r1", deadline_s=30)) as context:
            return await coro, context

    return asyncio.run(main())


def test_the_result_comes_back_with_the_context_sent_and_the_hop_counted():
    service = Service()
    result, context = served(round_trip(service.method, n=41))
    assert result == 42
    [sent] = service.requests
    assert sent.id == "r1" and 0 < sent.deadline_s <= 30
    assert "hop" in context.ms and SERVICE_STAGE not in context.ms


def test_the_services_api_error_is_raised_again():
    with pytest.raises(ApiError) as raised:
        served(round_trip(Service().method, n=1, bad=True))
    assert raised.value.status == 422 and raised.value.field == "image"


def test_a_dropped_connection_is_sent_again_only_where_the_caller_allows():
    dropped = aiohttp.ServerDisconnectedError()
    twice = Service(failures=2, error=dropped)
    result, _ = served(round_trip(twice.method, retries=2, n=1))
    assert result == 2 and len(twice.requests) == 3
    thrice = Service(failures=3, error=dropped)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        served(round_trip(thrice.method, retries=2, n=1))
    assert len(thrice.requests) == 3
    once = Service(failures=1, error=dropped)  # by default nothing is sent twice
    with pytest.raises(aiohttp.ServerDisconnectedError):
        served(round_trip(once.method, n=1))
    assert len(once.requests) == 1


def test_a_service_that_does_not_answer_is_the_503_its_caller_names():
    down = Service(failures=1, error=bentoml.exceptions.BentoMLException("gone"))
    with pytest.raises(ApiError) as raised:
        served(round_trip(down.method, unavailable="gallery store", n=1))
    assert raised.value.status == 503
    assert raised.value.message == "gallery store unavailable (BentoMLException); retry later"
    # unnamed, the failure is the endpoint's to answer (``@handled``: a 503 too)
    with pytest.raises(ConnectionRefusedError):
        served(round_trip(Service(failures=1, error=ConnectionRefusedError()).method, n=1))
