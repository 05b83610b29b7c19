"""The runner's methods as the API workers call them: one round trip per request.

A pooled keep-alive connection can be closed by the runner's server just as a request is
written to it (its idle timeout); the calls are idempotent, so such a call is sent again. Each
call carries the request's context (``face_api/ops/context.py``); the runner's ``Reply`` is
unwrapped here: a client's bad image comes back as the runner's ``ApiError`` and is raised
again, and the runner's stages join the request's, with ``hop`` for the round trip less the
runner's own time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import numpy as np

from face_api.ops.context import current, since_ms
from face_api.ops.errors import SERVICE_STAGE, Reply
from face_api.pipeline.analysis import Analysis, EncodedImage, FaceQuery

log = logging.getLogger("face_api")


class RunnerClient:
    RETRIES = 2

    def __init__(self, runner: Any, max_faces_cap: int) -> None:
        self.runner = runner  # the ``bentoml.depends`` handle of ``InsightFaceRunner``
        self.max_faces_cap = max_faces_cap  # FACE_MAX_RESULTS_CAP: no answer holds more faces

    async def analyze(self, images: Sequence[EncodedImage], query: FaceQuery) -> list[Analysis]:
        """Each image's faces as ``query`` asks (at most the server's cap)."""
        if query.max_faces > self.max_faces_cap:
            query = FaceQuery(self.max_faces_cap, query.sort_type, query.embed, query.quality)
        found = await self._round_trip(
            self.runner.to_async.analyze, images=list(images), query=query.to_wire()
        )
        return [Analysis.from_wire(item) for item in found]

    async def embed_crops(self, crops: Sequence[EncodedImage]) -> np.ndarray:
        """(N, D) unit embeddings of already aligned crops."""
        return await self._round_trip(self.runner.to_async.embed_crops, images=list(crops))

    async def info(self) -> dict[str, Any]:
        """The pack, its models, providers and device (``InsightFaceRunner.info``)."""
        return await self.runner.to_async.info()

    async def _round_trip(self, call: Callable[..., Awaitable[Reply]], **arguments: Any) -> Any:
        context = current()
        start = time.perf_counter()
        for attempt in range(self.RETRIES + 1):
            try:
                reply = await call(request=context.to_wire(), **arguments)
                break
            except aiohttp.ClientConnectionError:
                if attempt == self.RETRIES:
                    raise
                log.info("runner connection dropped during %s; retrying", call.__name__)
        stages = dict(reply.timings)
        context.add("hop", since_ms(start) - stages.pop(SERVICE_STAGE, 0.0))
        for stage, milliseconds in stages.items():
            context.add(stage, milliseconds)
        return reply.unwrap()
