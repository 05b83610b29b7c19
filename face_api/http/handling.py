"""A request's work turned into the contract's answer: its result, or the error response.

One place for what every endpoint does, the reference's POSTs in ``service.py`` and the
galleries' routes alike: the request's deadline (503), and every failure as the contract's
answer (``face_api/http/errors.py``), never a 500 or a hang. An endpoint gets all of it by being
declared ``@handled``; the deadline is the edge's (``RequestDeadline``, built from the settings).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import ParamSpec, TypeVar

from fastapi.responses import JSONResponse

from face_api.http.asgi import ASGIApp, Receive, Scope, Send
from face_api.http.errors import api_error, error_response
from face_api.ops.timing import request_timings, since_ms

T = TypeVar("T")
P = ParamSpec("P")
# The seconds an endpoint's work may take, for the request being served (None: no deadline, as
# for an endpoint called outside a server).
deadline_s: ContextVar[int | None] = ContextVar("face_api_deadline_s", default=None)


class RequestDeadline:
    """Gives every request the deadline ``@handled`` enforces on its endpoint's work."""

    def __init__(self, app: ASGIApp, timeout_s: int) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = deadline_s.set(self.timeout_s)
        try:
            await self.app(scope, receive, send)
        finally:
            deadline_s.reset(token)


def handled(endpoint: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T | JSONResponse]]:
    """The endpoint's result within the request's deadline, or the contract's error response.

    Its signature and annotations stay the endpoint's own (``functools.wraps``), so BentoML and
    FastAPI read the request schema from it as if it were undecorated.
    """

    @functools.wraps(endpoint)
    async def contract_endpoint(*args: P.args, **kwargs: P.kwargs) -> T | JSONResponse:
        timings = request_timings()
        timings.add("parse", since_ms(timings.started))  # everything before the handler
        timeout_s = deadline_s.get()
        try:
            async with asyncio.timeout(timeout_s):
                return await endpoint(*args, **kwargs)
        except Exception as exc:
            error = api_error(exc, timeout_s or 0)
            if error is None:
                raise
            return error_response(error)
        finally:
            timings.handler_ended = time.perf_counter()

    return contract_endpoint
