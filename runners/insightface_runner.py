"""The BentoML service that owns the models and the face pipeline (one worker per GPU).

A request reaches it once: ``analyze`` takes the encoded images as the client sent them and
answers every image's faces and embeddings (decode, letterbox, detect, select, align, embed:
``face_api/pipeline/analysis.py``); ``embed_crops`` takes already aligned crops. Concurrent
requests share forward passes through ``BatchedBackend`` (``face_api/inference/backend.py``;
``batching.py`` says why not BentoML's ``batchable``); the rows of every pass are counted in the
``face_runner_batch_rows`` histogram on ``/metrics``.

Its methods take and answer the runner hop's types (``face_api/ops/runner_hop.py``). Every call
answers a ``Reply`` (``face_api/ops/errors.py``): its result, or a client's bad input as an
``ApiError``, and the runner's stage timings.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bentoml
from bentoml.models import BentoModel

from face_api.inference.backend import BatchedBackend
from face_api.inference.engine import DeviceUnavailableError, FaceEngine, ModelPackError
from face_api.inference.packs import get_pack, pack_tag
from face_api.ops import environment
from face_api.ops.context import CallContext, RequestContext, serving
from face_api.ops.errors import Reply, replying
from face_api.ops.runner_hop import (
    Analysis,
    DetectorInfo,
    Embeddings,
    EncodedImage,
    FaceQuery,
    PackInfo,
    RecognizerInfo,
    RunnerInfo,
)
from face_api.ops.settings import get_settings
from face_api.ops.startup import INTERNAL_CONNECTION, freeze_heap, refuse_to_start, start_worker
from face_api.pipeline.analysis import FacePipeline
from face_api.pipeline.decoders import ImageDecoders

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
    workers=settings.runner_workers,
    traffic={"timeout": settings.request_timeout_s},
    runner_connection=INTERNAL_CONNECTION,
    # An internal hop: the API's access log and trace spans cover each request. Not tracing the
    # runner's calls saves OpenTelemetry's middleware, 0.55 ms a call here (benchmarks/README.md).
    logging={"access": {"enabled": False}},
    tracing={"excluded_urls": ["/analyze", "/embed_crops", "/info"]},
)
class InsightFaceRunner:
    # A class-level reference is what `bentoml build` follows to carry the pack into the Bento.
    pack = BentoModel(pack_tag(settings.model))

    def __init__(self) -> None:
        start_worker()
        self.conflicts = environment.conflicts()
        if self.conflicts:
            log.warning("!!! %s !!!", environment.report(self.conflicts))
        stored = get_pack(settings.model)
        try:
            self.engine = FaceEngine(Path(stored.path), settings, pack_name=settings.model)
        except (DeviceUnavailableError, ModelPackError) as exc:
            refuse_to_start(str(exc))
        # Letterboxing, aligning and NMS: OpenCV and NumPy release the GIL.
        pool = ThreadPoolExecutor(settings.image_threads, thread_name_prefix="face-images")
        self.pipeline = FacePipeline(
            BatchedBackend(
                self.engine.detector,
                self.engine.recognizer,
                pool,
                on_detect_batch=batch_rows.labels(method="detect").observe,
                on_embed_batch=batch_rows.labels(method="embed").observe,
            ),
            # Decoding: processes a request's deadline can stop (face_api/pipeline/decoders.py).
            ImageDecoders(settings.image_threads, settings.max_pixels),
            det_size=settings.det_size,
            crop_size=self.engine.recognizer.crop_size,
            max_pixels=settings.max_pixels,
            max_pixels_in_flight=settings.max_pixels_in_flight,
            embed_chunk=self.engine.recognizer.max_batch,
            pool=pool,
            norm_reference=self.engine.norm_reference,
        )
        self.served = self._served(stored)
        freeze_heap()

    def _served(self, stored: bentoml.Model) -> RunnerInfo:
        import onnxruntime

        engine, metadata = self.engine, stored.info.metadata
        return RunnerInfo(
            pack=PackInfo(
                name=settings.model,
                tag=str(stored.tag),
                files=metadata["files"],
                match_threshold=metadata["match_threshold"],
                match_threshold_measured=metadata["match_threshold_measured"],
            ),
            detector=DetectorInfo(
                file=engine.detector_file,
                input_size=[settings.det_size, settings.det_size],
                score_threshold=engine.detector.threshold,
                nms_threshold=engine.detector.nms_threshold,
                max_batch=engine.detector.max_batch,
            ),
            recognizer=RecognizerInfo(
                file=engine.recognizer_file,
                input_size=[engine.recognizer.crop_size, engine.recognizer.crop_size],
                embedding_size=engine.recognizer.embedding_size,
                runtime=engine.recognizer.runtime,
            ),
            providers=engine.providers,
            device=engine.device,
            onnxruntime=onnxruntime.__version__,
            package_conflicts=[c.describe() for c in self.conflicts],
            repair_command=environment.repair_command(self.conflicts) if self.conflicts else None,
        )

    @bentoml.api
    async def analyze(
        self, images: list[EncodedImage], query: FaceQuery, request: CallContext
    ) -> Reply[list[Analysis]]:
        """Encoded images, each with the request field it came in, and what the request asks of
        them -> per image its ``Analysis``; or the error of the first image that cannot be
        decoded. ``request``: the request's context."""
        with serving(RequestContext.from_wire(request)) as context, replying(context) as reply:
            reply.result = await self.pipeline.analyze(images, query)
        return reply

    @bentoml.api
    async def embed_crops(
        self, images: list[EncodedImage], request: CallContext
    ) -> Reply[Embeddings]:
        """Encoded aligned crops, each with its request field -> their unit embeddings."""
        with serving(RequestContext.from_wire(request)) as context, replying(context) as reply:
            reply.result = Embeddings(vectors=await self.pipeline.embed_crops(images))
        return reply

    @bentoml.api
    def info(self) -> RunnerInfo:
        """What the info endpoints report: the pack, its files and sizes, providers, device."""
        return self.served
