"""The runner's methods as the API workers call them: one round trip per request
(``face_api/http/round_trip.py``), in the runner hop's types (``face_api/ops/runner_hop.py``).
Every call is idempotent, so one whose connection the runner's server dropped is sent again."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from face_api.http.round_trip import round_trip
from face_api.ops.runner_hop import Analysis, EncodedImage, FaceQuery, RunnerInfo


class RunnerClient:
    RETRIES = 2

    def __init__(self, runner: Any, max_faces_cap: int) -> None:
        self.runner = runner  # the ``bentoml.depends`` handle of ``InsightFaceRunner``
        self.max_faces_cap = max_faces_cap  # FACE_MAX_RESULTS_CAP: no answer holds more faces

    async def analyze(self, images: Sequence[EncodedImage], query: FaceQuery) -> list[Analysis]:
        """Each image's faces as ``query`` asks (at most the server's cap)."""
        if query.max_faces > self.max_faces_cap:
            query = query.model_copy(update={"max_faces": self.max_faces_cap})
        return await round_trip(
            self.runner.to_async.analyze, retries=self.RETRIES, images=list(images), query=query
        )

    async def embed_crops(self, crops: Sequence[EncodedImage]) -> np.ndarray:
        """(N, D) unit embeddings of already aligned crops."""
        embeddings = await round_trip(
            self.runner.to_async.embed_crops, retries=self.RETRIES, images=list(crops)
        )
        return embeddings.vectors

    async def info(self) -> RunnerInfo:
        """The pack, its models, providers and device (``InsightFaceRunner.info``)."""
        return await self.runner.to_async.info()
