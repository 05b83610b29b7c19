"""Stand-ins for the project's own parts, for unit tests that run one part without the others:
the runner as BentoML's handle and as ``RunnerClient``, the models as an ``InferenceBackend``, and
a tiny app behind the edge's layers. (The real ones meet in tests/e2e.)"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from pydantic import TypeAdapter, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from face_api.http.admission import (
    ApiKeyMiddleware,
    BodyLimitMiddleware,
    ExactPathMiddleware,
    RequestBodyMiddleware,
)
from face_api.http.error_responses import ErrorShapeMiddleware
from face_api.http.face_endpoints import FaceEndpoints
from face_api.http.info import ServedModel
from face_api.ops.context import CallContext, RequestContext
from face_api.ops.errors import Reply, replying
from face_api.ops.runner_hop import (
    DETECTION_WIDTH,
    Analysis,
    DetectorInfo,
    EncodedImage,
    FaceQuery,
    PackInfo,
    RecognizerInfo,
    RunnerInfo,
)
from face_api.ops.settings import Settings
from face_api.pipeline.quality import Bars


# -- the runner --------------------------------------------------------------------------------
class RunnerHandle:
    """``bentoml.depends``'s handle of the runner: records each call's arguments and answers as
    the runner does, one empty ``Analysis`` per image, with a ``decode`` stage."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        handle = self

        class to_async:  # noqa: N801 - BentoML's name
            @staticmethod
            async def analyze(
                images: list[EncodedImage], query: FaceQuery, request: CallContext
            ) -> Reply[list[Analysis]]:
                handle.calls.append({"images": images, "query": query, "request": request})
                with replying(RequestContext.from_wire(request)) as reply:
                    no_face = np.zeros((0, DETECTION_WIDTH), np.float32)
                    reply.result = [Analysis(faces=no_face, height=4, width=3) for _ in images]
                reply.timings["decode"] = 2.0
                return reply

        self.to_async = to_async


RUNNER_INFO = RunnerInfo(
    pack=PackInfo(
        name="pack_a",
        tag="pack_a:1",
        files={"det.onnx": "ab12", "rec.onnx": "cd34"},
        match_threshold=0.3,
        match_threshold_measured="given when the pack was imported",
    ),
    detector=DetectorInfo(
        file="det.onnx", input_size=[640, 640], score_threshold=0.5, nms_threshold=0.4, max_batch=1
    ),
    recognizer=RecognizerInfo(
        file="rec.onnx", input_size=[112, 112], embedding_size=4, runtime="onnxruntime"
    ),
    providers=["CPUExecutionProvider"],
    device="cpu",
    onnxruntime="1",
    package_conflicts=[],
    repair_command=None,
)


class FakeRunner:
    """``RunnerClient``'s calls, answering canned analyses and recording what was asked."""

    def __init__(self, analyses: list[Analysis]) -> None:
        self.analyses = analyses
        self.calls: list[dict[str, Any]] = []
        self.info_calls = 0

    async def analyze(self, images, query: FaceQuery) -> list[Analysis]:
        self.calls.append({"images": list(images), "query": query})
        return self.analyses[: len(images)]

    async def embed_crops(self, crops) -> np.ndarray:
        self.calls.append({"crops": list(crops)})
        return np.array([[1.0, 0.0, 0.0, 0.0]], np.float32)

    async def info(self) -> RunnerInfo:
        self.info_calls += 1
        return RUNNER_INFO


def fake_endpoints(analyses: list[Analysis]) -> tuple[FaceEndpoints, FakeRunner]:
    """``FaceEndpoints`` (and their ``ServedModel``) on a ``FakeRunner`` answering ``analyses``."""
    runner = FakeRunner(analyses)
    served = ServedModel(runner, "face-api")  # type: ignore[arg-type]
    return FaceEndpoints(runner, served, Bars.from_settings(Settings())), runner  # type: ignore[arg-type]


# -- the models --------------------------------------------------------------------------------
class CannedBackend:
    """The models as an ``InferenceBackend``: each image detected gets the next of ``detections``
    (rows in canvas pixels); a crop's raw embedding is ``[its brightest pixel, 10, 0, 0]``, so
    each embedding tells which image its crop was cut from, and its norm is known. Records every
    forward pass."""

    EMBEDDING_SIZE = 4

    def __init__(self, detections: list[np.ndarray]) -> None:
        self.detections = list(detections)
        self.detect_passes: list[np.ndarray] = []
        self.embed_passes: list[np.ndarray] = []

    async def detect(self, canvases: np.ndarray) -> list[np.ndarray]:
        self.detect_passes.append(canvases)
        return [self.detections.pop(0) for _ in canvases]

    async def embed(self, crops: np.ndarray) -> np.ndarray:
        self.embed_passes.append(crops)
        raw = np.zeros((len(crops), self.EMBEDDING_SIZE), np.float32)
        raw[:, 0] = crops.reshape(len(crops), -1).max(axis=1)
        raw[:, 1] = 10.0
        return raw


class HeldDetector:
    """Detects nothing until released, so a request keeps its pixels as long as the test says."""

    def __init__(self) -> None:
        self.entered = asyncio.Condition()
        self.requests = 0  # requests that reached detection
        self.release = asyncio.Event()

    async def detect(self, canvases: np.ndarray) -> list[np.ndarray]:
        async with self.entered:
            self.requests += 1
            self.entered.notify_all()
        await self.release.wait()
        return [np.zeros((0, DETECTION_WIDTH), np.float32) for _ in canvases]

    async def embed(self, crops: np.ndarray) -> np.ndarray:
        raise AssertionError("no face, nothing to embed")


class HeldRecognizer:
    """Finds one face in every image, and embeds only once released."""

    def __init__(self) -> None:
        self.embedding = asyncio.Event()
        self.release = asyncio.Event()

    async def detect(self, canvases: np.ndarray) -> list[np.ndarray]:
        face = np.array([[10, 10, 40, 40, 0.9, 20, 20, 30, 20, 25, 25, 20, 30, 30, 30]], np.float32)
        return [face for _ in canvases]

    async def embed(self, crops: np.ndarray) -> np.ndarray:
        self.embedding.set()
        await self.release.wait()
        return np.ones((len(crops), 8), np.float32)


# -- the edge ----------------------------------------------------------------------------------
async def echo(request: Request) -> JSONResponse:
    return JSONResponse({"size": len(await request.body())})


async def echo_json(request: Request) -> JSONResponse:
    """A JSON route as BentoML's: it parses the body itself (with pydantic), once, and answers a
    syntax error 400 with pydantic's items, which the edge rewrites to the contract's 422."""
    try:
        body = TypeAdapter(Any).validate_json(await request.body())
    except ValidationError as exc:
        items = exc.errors(include_url=False, include_input=False, include_context=False)
        return JSONResponse({"error": str(exc), "detail": items}, status_code=400)
    return JSONResponse({"body": body, "content_type": request.headers["content-type"]})


async def bentoml_validation(request: Request) -> JSONResponse:
    return JSONResponse(
        {
            "error": "2 validation errors",
            "detail": [
                {"type": "missing", "loc": ["image"], "msg": "Field required", "url": "x"},
                {"type": "int_parsing", "loc": ["seq"], "msg": "bad int"},
            ],
        },
        status_code=400,
    )


def edge_client(
    keys=("k1", "k2"), enabled=True, max_bytes=1000, max_bytes_in_flight=None, base_url=None
) -> TestClient:
    """A client of a tiny app (echo routes, BentoML-style error bodies) behind the edge's
    admission and error-shape layers, in the service's order."""
    app = Starlette(
        routes=[
            Route("/v1/echo", echo, methods=["POST", "GET", "DELETE"]),
            Route("/v1/health", echo, methods=["GET"]),
            Route("/v1/info/server", echo, methods=["GET"]),
            Route("/v1/file/echo", echo, methods=["POST"]),
            Route("/v1/json", echo_json, methods=["POST"]),
            Route("/v1/g/{name}/json", echo_json, methods=["POST"]),
            Route("/v1/file/g/{name}/json", echo, methods=["POST"]),
            Route("/v1/invalid", bentoml_validation, methods=["POST"]),
            Route("/v1/text404", lambda r: PlainTextResponse("Not Found", 404), methods=["POST"]),
        ]
    )
    app.add_middleware(ErrorShapeMiddleware)
    app.add_middleware(
        RequestBodyMiddleware,
        json_routes=["/v1/json", "/v1/g/{name}/json"],
        file_routes={"/v1/file/echo": ("image",), "/v1/file/g/{name}/json": ("image",)},
    )
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=max_bytes,
        max_bytes_in_flight=max_bytes_in_flight or 4 * max_bytes,
    )
    app.add_middleware(ExactPathMiddleware)
    app.add_middleware(ApiKeyMiddleware, keys=keys, enabled=enabled)  # outermost
    return TestClient(app, base_url=base_url or "http://testserver")
