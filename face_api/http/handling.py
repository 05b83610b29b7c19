"""A request's work turned into the contract's answer: its result, or the error response.

One place for what every endpoint does on failure, the reference's POSTs in ``service.py`` and
the galleries' routes alike: a deadline (503), invalid input (422 naming the field), a backend
that is down (503 with ``Retry-After``), never a 500 or a hang. An endpoint gets all of it by
being declared ``@handled``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

import aiohttp
import bentoml
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from face_api.ops.settings import get_settings
from face_api.ops.timing import request_timings, since_ms
from face_api.pipeline.errors import RequestError

log = logging.getLogger("face_api")
T = TypeVar("T")
P = ParamSpec("P")
RETRY_AFTER_S = "1"
# What a call to another BentoML service raises when that service is down or restarting.
BACKEND_ERRORS = (bentoml.exceptions.BentoMLException, aiohttp.ClientError, OSError)


def unavailable(message: str) -> JSONResponse:
    """503 in the contract's shape, with a hint when to try again."""
    return JSONResponse(
        {"detail": f"{message}; retry later"},
        status_code=503,
        headers={"retry-after": RETRY_AFTER_S},
    )


class StatusError(Exception):
    """An answer other than 422 for one field: 404, or 503 for a named backend."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field = status, message, field

    def response(self) -> JSONResponse:
        if self.status == 422:
            return JSONResponse(RequestError(self.field or "body", self.message).body(), 422)
        if self.status == 503:
            return unavailable(self.message)
        return JSONResponse({"detail": self.message}, self.status)


async def answer(work: Awaitable[T], timeout_s: int) -> T | JSONResponse:
    """``work``'s result within ``timeout_s``, or the contract's error response."""
    timings = request_timings()
    timings.add("parse", since_ms(timings.started))  # everything before the handler
    try:
        async with asyncio.timeout(timeout_s):
            return await work
    except RequestError as exc:
        return JSONResponse(exc.body(), status_code=exc.status)
    except ValidationError as exc:
        items = [
            {"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_input=False, include_url=False)
        ]
        return JSONResponse({"detail": items}, status_code=422)
    except StatusError as exc:
        return exc.response()
    except TimeoutError:  # before BACKEND_ERRORS: TimeoutError is an OSError
        log.warning("request timed out after %s s", timeout_s)
        return unavailable(f"request timed out after {timeout_s} s")
    except BACKEND_ERRORS as exc:
        log.warning("inference backend failed: %s", type(exc).__name__)
        return unavailable(f"inference backend unavailable ({type(exc).__name__})")
    finally:
        timings.handler_ended = time.perf_counter()


def handled(endpoint: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T | JSONResponse]]:
    """The endpoint's result within the request deadline, or the contract's error response.

    Its signature and annotations stay the endpoint's own (``functools.wraps``), so BentoML and
    FastAPI read the request schema from it as if it were undecorated.
    """

    @functools.wraps(endpoint)
    async def contract_endpoint(*args: P.args, **kwargs: P.kwargs) -> T | JSONResponse:
        return await answer(endpoint(*args, **kwargs), get_settings().request_timeout_s)

    return contract_endpoint
