"""The runner's methods as the API workers call them: one round trip per request.

A pooled keep-alive connection can be closed by the runner's server just as a request is
written to it (its idle timeout); the calls are idempotent, so such a call is sent again. The
runner's ``Reply`` is unwrapped here: a client's bad image comes back as the runner's
``ApiError`` and is raised again; the runner's stage timings join the request's, with ``hop``
for the round trip less the runner's own time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import numpy as np

from face_api.ops.errors import SERVICE_STAGE, Reply
from face_api.ops.timing import request_timings, since_ms
from face_api.pipeline.analysis import Analysis, EncodedImage
from face_api.pipeline.faces import DetectSortType

log = logging.getLogger("face_api")


class RunnerClient:
    RETRIES = 2

    def __init__(self, runner: Any) -> None:
        self.runner = runner  # the ``bentoml.depends`` handle of ``InsightFaceRunner``

    async def analyze(
        self,
        images: Sequence[EncodedImage],
        max_faces: int,
        sort_type: DetectSortType,
        embed: bool,
        quality: bool = False,
    ) -> list[Analysis]:
        """Each image's faces, and their embeddings and quality measures when asked for."""
        found = await self._round_trip(
            "analyze",
            lambda: self.runner.to_async.analyze(
                images=list(images),
                max_faces=max_faces,
                sort_type=int(sort_type),
                embed=embed,
                quality=quality,
            ),
        )
        return [Analysis(**item) for item in found]

    async def embed_crops(self, crops: Sequence[EncodedImage]) -> np.ndarray:
        """(N, D) unit embeddings of already aligned crops."""
        return await self._round_trip(
            "embed_crops", lambda: self.runner.to_async.embed_crops(images=list(crops))
        )

    async def info(self) -> dict[str, Any]:
        """The pack, its models, providers and device (``InsightFaceRunner.info``)."""
        return await self.runner.to_async.info()

    async def _round_trip(self, name: str, call: Callable[[], Awaitable[Reply]]) -> Any:
        start = time.perf_counter()
        for attempt in range(self.RETRIES + 1):
            try:
                reply = await call()
                break
            except aiohttp.ClientConnectionError:
                if attempt == self.RETRIES:
                    raise
                log.info("runner connection dropped during %s; retrying", name)
        stages = dict(reply.timings)
        timings = request_timings()
        timings.add("hop", since_ms(start) - stages.pop(SERVICE_STAGE, 0.0))
        timings.merge(stages)
        return reply.unwrap()
