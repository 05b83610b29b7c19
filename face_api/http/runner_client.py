"""The runner's methods as the API workers call them: one round trip per request.

A pooled keep-alive connection can be closed by the runner's server just as a request is
written to it (its idle timeout); the calls are idempotent, so such a call is sent again. A
client's bad image comes back as an error naming its field and is raised as the same 422; the
runner's stage timings join the request's, with ``hop`` for the round trip less the runner's
own time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
import numpy as np

from face_api.ops.timing import request_timings, since_ms
from face_api.pipeline.analysis import Analysis, Image
from face_api.pipeline.errors import RequestError
from face_api.pipeline.faces import DetectSortType

log = logging.getLogger("face_api")


class RunnerClient:
    RETRIES = 2

    def __init__(self, runner: Any) -> None:
        self.runner = runner  # the ``bentoml.depends`` handle of ``InsightFaceRunner``

    async def analyze(
        self,
        images: Sequence[Image],
        max_faces: int,
        sort_type: DetectSortType,
        embed: bool,
        quality: bool = False,
    ) -> list[Analysis]:
        found = await self._call(
            "analyze",
            images=list(images),
            max_faces=max_faces,
            sort_type=int(sort_type),
            embed=embed,
            quality=quality,
        )
        return [Analysis(**item) for item in found]

    async def embed_crops(self, images: Sequence[Image]) -> np.ndarray:
        return await self._call("embed_crops", images=list(images))

    async def info(self) -> dict[str, Any]:
        return await self.runner.to_async.info()

    async def _call(self, method: str, **arguments: Any) -> Any:
        start = time.perf_counter()
        for attempt in range(self.RETRIES + 1):
            try:
                answer = await getattr(self.runner.to_async, method)(**arguments)
                break
            except aiohttp.ClientConnectionError:
                if attempt == self.RETRIES:
                    raise
                log.info("runner connection dropped during %s; retrying", method)
        # ``answer`` is a ``runners.insightface_runner.RunnerAnswer``
        stages = dict(answer.timings)
        timings = request_timings()
        timings.add("hop", since_ms(start) - stages.pop("runner", 0.0))
        timings.merge(stages)
        if answer.error is not None:
            error = answer.error
            raise RequestError(error["field"], error["msg"], type_=error["type"])
        return answer.result
