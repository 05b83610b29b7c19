"""The BentoML service that owns the ONNX Runtime sessions (one worker per GPU, batching).

Its methods take batches of small tensors: letterboxed detector canvases and aligned crops. The
API service (``service.py``) reaches it through ``bentoml.depends``. Concurrent requests share
forward passes through ``ContinuousBatcher`` (see runners/batching.py for why not BentoML's
``batchable``); the rows of every pass are counted in the ``face_runner_batch_rows`` histogram
on ``/metrics``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import bentoml
import numpy as np
from bentoml.models import BentoModel
from bentoml.validators import DType

from face_api.packs import get_pack, pack_tag
from face_api.settings import get_settings
from face_api.startup import enable_service_logging, refuse_to_start
from runners.batching import ContinuousBatcher
from runners.engine import DeviceUnavailableError, FaceEngine, ModelPackError

log = logging.getLogger("face_api.runner")
settings = get_settings()
# Fail at import, before BentoML looks the model up, with a message that says how to import it.
get_pack(settings.model)

batch_rows = bentoml.metrics.Histogram(
    name="face_runner_batch_rows",
    documentation="Rows (canvases or crops) in each forward pass the runner formed",
    labelnames=["method"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)


@bentoml.service(
    name="InsightFaceRunner",
    workers=1,
    traffic={"timeout": settings.request_timeout_s},
    # bentoml 1.4.40 closes its client session every `max_requests` calls while other calls are
    # still in flight on it (async callers then see resets); a huge value avoids the recycling.
    runner_connection={"max_requests": 10**9, "max_age": 1e9},
)
class InsightFaceRunner:
    # A class-level reference is what `bentoml build` follows to carry the pack into the Bento.
    pack = BentoModel(pack_tag(settings.model))

    def __init__(self) -> None:
        enable_service_logging()
        stored = get_pack(settings.model)
        try:
            self.engine = FaceEngine(Path(stored.path), settings, pack_name=settings.model)
        except (DeviceUnavailableError, ModelPackError) as exc:
            refuse_to_start(str(exc))
        self.detect_batcher = ContinuousBatcher(
            self.engine.detect,
            settings.detect_max_batch_size,
            on_batch=batch_rows.labels(method="detect").observe,
        )
        self.embed_batcher = ContinuousBatcher(
            self.engine.embed,
            settings.embed_max_batch_size,
            on_batch=batch_rows.labels(method="embed").observe,
        )
        self.pack_info: dict[str, Any] = {
            "name": settings.model,
            "tag": str(stored.tag),
            **stored.info.metadata,
        }

    @bentoml.api
    async def detect(self, canvases: Annotated[np.ndarray, DType("uint8")]) -> np.ndarray:
        """(N, S, S, 3) letterboxed BGR canvases -> (N, K, 15) detections, zero-padded."""
        return await self.detect_batcher.submit(canvases)

    @bentoml.api
    async def embed(self, crops: Annotated[np.ndarray, DType("uint8")]) -> np.ndarray:
        """(N, 112, 112, 3) aligned BGR crops -> (N, D) unit embeddings."""
        return await self.embed_batcher.submit(crops)

    @bentoml.api
    def info(self) -> dict[str, Any]:
        """What the info endpoints report: the pack, its files and sizes, providers, device."""
        import onnxruntime

        engine = self.engine
        return {
            "pack": self.pack_info,
            "detector": {
                "file": engine.detector_file,
                "input_size": [settings.det_size, settings.det_size],
                "score_threshold": settings.det_threshold,
                "nms_threshold": engine.detector.nms_thresh,
            },
            "recognizer": {
                "file": engine.recognizer_file,
                "input_size": [engine.crop_size, engine.crop_size],
                "embedding_size": engine.embedding_size,
                "runtime": engine.recognizer_runtime,
            },
            "providers": engine.providers,
            "device": engine.device,
            "onnxruntime": onnxruntime.__version__,
            "intra_op_threads": settings.intra_op_threads,
        }
