"""One round trip from an API worker to an internal BentoML service, for the request being served.

Every call carries the request's context (``face_api/ops/context.py``) as the method's
``request``, so the service serves it under the request's id and deadline. The service answers a
``Reply`` (``face_api/ops/errors.py``), unwrapped here: a client's bad input comes back as the
service's ``ApiError`` and is raised again, and the service's stages join the request's, with
``hop`` for the round trip less the service's own time.

A pooled keep-alive connection can be closed by the service's server just as a call is written
to it (its idle timeout); an idempotent call may be sent again (``retries``). A service that does
not answer raises BentoML's or aiohttp's error, for the endpoint's ``@handled`` to answer 503;
with ``unavailable`` named, it is that 503 at once ("gallery store unavailable (...)"). The
runner's and the gallery store's calls both go through here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp

from face_api.http.error_responses import BACKEND_ERRORS
from face_api.ops.context import current, since_ms
from face_api.ops.errors import SERVICE_STAGE, ApiError, Reply

T = TypeVar("T")
log = logging.getLogger("face_api")


async def round_trip(
    call: Callable[..., Awaitable[Reply[T]]],
    *,
    retries: int = 0,
    unavailable: str | None = None,
    hop: str = "hop",
    service: str | None = None,
    **arguments: Any,
) -> T:
    """``call(request=<the context>, **arguments)``'s result, or its ``ApiError`` raised. The
    round trip less the service's own time is the request's stage ``hop``; the service's own time
    is the stage ``service`` if named (else only the stages it reports are joined)."""
    context = current()
    start = time.perf_counter()
    try:
        for attempt in range(retries + 1):
            try:
                reply = await call(request=context.to_wire(), **arguments)
                break
            except aiohttp.ClientConnectionError:
                if attempt == retries:
                    raise
                log.info("connection dropped during %s; retrying", call.__name__)
    except BACKEND_ERRORS as exc:
        if unavailable is None:
            raise
        raise ApiError.unavailable(f"{unavailable} unavailable ({type(exc).__name__})") from None
    stages = dict(reply.timings)
    own = stages.pop(SERVICE_STAGE, 0.0)
    context.add(hop, since_ms(start) - own)
    if service is not None:
        context.add(service, own)
    for stage, milliseconds in stages.items():
        context.add(stage, milliseconds)
    return reply.unwrap()
