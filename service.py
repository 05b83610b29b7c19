"""The HTTP face of the face API: one method per /v1 path of shared/api-reference.md.

POSTs are native BentoML APIs (so ``bentoml.SyncHTTPClient`` can call them); the GETs live in a
small FastAPI app mounted on the same service. The models run in ``InsightFaceRunner``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import bentoml
import numpy as np
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import Field

from face_api import __version__
from face_api.answers import RETRY_AFTER_S, answer
from face_api.faces import DetectSortType
from face_api.features import cosine, encode_feature, feature_score
from face_api.gallery_api import post_routes as gallery_post_routes
from face_api.gallery_api import router as gallery_router
from face_api.images import decode_base64
from face_api.middleware import (
    ApiKeyMiddleware,
    BodyLimitMiddleware,
    ConcurrencyLimitMiddleware,
    ErrorShapeMiddleware,
    RequestBodyMiddleware,
    RequestIdMiddleware,
    ServerTimingMiddleware,
)
from face_api.openapi import DocsMiddleware, contract_openapi
from face_api.pipeline import Analysis
from face_api.responses import detect_result, embedding_list, no_face, whole_crop
from face_api.runner_client import RunnerClient
from face_api.schemas import (
    MAX_RESULTS_LIMIT,
    DetectReqBody,
    DetectResponse,
    DetectSortTypeValue,
    EmbeddingsInfoResult,
    EmbeddingsReqBody,
    EmbeddingsResponse,
    ErrorMessage,
    FeatureInfoResult,
    FeatureReqBody,
    FeatureResponse,
    FeatureScoreReqBody,
    FeatureScoreResponse,
    HealthResponse,
    ModelDetail,
    ModelNames,
    MultiEmbeddingsReqBody,
    MultiEmbeddingsResponse,
    MultiFeatureReqBody,
    MultiFeatureResponse,
    RequestInt,
    ScoreReqBody,
    ScoreResponse,
    ServerInfo,
)
from face_api.settings import get_settings
from face_api.startup import refuse_to_start, start_worker
from face_api.timing import request_timings
from runners.gallery_service import GalleryStoreService
from runners.insightface_runner import InsightFaceRunner

log = logging.getLogger("face_api")
SERVICE_NAME = "face-api"
settings = get_settings()
T = TypeVar("T")

# Its routes are merged into the service's /docs.json; it serves no docs of its own.
info_app = FastAPI(
    title="face-api info", version=__version__, openapi_url=None, docs_url=None, redoc_url=None
)
info_app.include_router(gallery_router)
MaxResults = Annotated[RequestInt, Field(ge=1, le=MAX_RESULTS_LIMIT)]
API_DESCRIPTION = (
    "Face detection and recognition: the /v1 face API of api-reference.md (detect, features, "
    "embeddings, scores), decided where it is open by CONTRACT.md, and galleries of enrolled "
    "faces for 1:N search (/v1/galleries). Every call except GET /v1/health and /v1/info/... "
    "needs an `x-api-key` header. Errors: 401 missing or unknown key, 413 body over the limit, "
    "422 invalid input in FastAPI's shape naming the field, 429 too many requests in flight, "
    "503 inference backend unavailable or timed out (both with Retry-After)."
)
BACKSTOP_TIMEOUT_S = 10
# The runner answers `info` in milliseconds, even under load. A dead runner's socket is held by
# BentoML's process manager, so a probe waits in its backlog until the restarted runner is up
# (about 6 s here): it must give up well before that, and before a probe's own timeout.
HEALTH_TIMEOUT_S = 2


@bentoml.service(
    name="FaceAPI",
    workers=settings.api_workers,
    # Our own deadline (`answer`) fires first with a 503 in the contract's shape; BentoML's 504
    # is only a backstop.
    traffic={"timeout": settings.request_timeout_s + BACKSTOP_TIMEOUT_S},
)
@bentoml.asgi_app(info_app, path="/v1")
class FaceAPI:
    runner = bentoml.depends(InsightFaceRunner)
    gallery_store = bentoml.depends(GalleryStoreService)

    def __init__(self) -> None:
        start_worker()
        if settings.auth_enabled and not settings.load_api_keys():
            refuse_to_start(
                "no API key configured: set FACE_API_KEYS (comma-separated) or FACE_API_KEYS_FILE "
                "(one key a line), or switch key checks off explicitly with FACE_API_AUTH=off"
            )
        self._info: dict[str, Any] | None = None
        self.client = RunnerClient(self.runner)

    # -- plumbing ----------------------------------------------------------------------------
    async def model_info(self) -> dict[str, Any]:
        if self._info is None:
            self._info = await self.client.info()
        return self._info

    @staticmethod
    async def answer(work: Awaitable[T]) -> T | JSONResponse:
        """The handler's result, or the contract's error response (``face_api.answers``)."""
        return await answer(work, settings.request_timeout_s)

    @staticmethod
    def _b64(text: str, field: str = "image") -> tuple[str, bytes]:
        with request_timings().stage("base64"):
            return field, decode_base64(text, field)

    @staticmethod
    def _file(path: Path, field: str = "image") -> tuple[str, bytes]:
        return field, path.read_bytes()

    async def _analyze(
        self, image: tuple[str, bytes], max_results: int, sort_type: int, embed: bool
    ) -> Analysis:
        limit = min(max_results, settings.max_results_cap)
        (found,) = await self.client.analyze([image], limit, DetectSortType(sort_type), embed)
        return found

    # -- shared request logic ----------------------------------------------------------------
    async def _detect(
        self, image: tuple[str, bytes], seq: int, sort_type: int, max_results: int
    ) -> DetectResponse:
        found = await self._analyze(image, max_results, sort_type, embed=False)
        shape = (found.height, found.width)
        return DetectResponse(seq=seq, faces=[detect_result(f, shape) for f in found.faces])

    async def _faces_with_embeddings(
        self, image: tuple[str, bytes], max_results: int
    ) -> list[tuple[Any, np.ndarray]]:
        found = await self._analyze(image, max_results, DetectSortType.AREA, embed=True)
        shape = (found.height, found.width)
        if not len(found.faces):
            return []
        return [
            (detect_result(f, shape), e) for f, e in zip(found.faces, found.embeddings, strict=True)
        ]

    async def _feature(self, image: tuple[str, bytes]) -> FeatureResponse:
        found = await self._faces_with_embeddings(image, 1)
        if not found:
            return FeatureResponse(version=__version__, feature="", face_detect=no_face())
        face, embedding = found[0]
        return FeatureResponse(
            version=__version__, feature=encode_feature(embedding), face_detect=face
        )

    async def _embeddings(self, image: tuple[str, bytes]) -> EmbeddingsResponse:
        found = await self._faces_with_embeddings(image, 1)
        if not found:
            return EmbeddingsResponse(version=__version__, embeddings=[], face_detect=no_face())
        face, embedding = found[0]
        return EmbeddingsResponse(
            version=__version__, embeddings=embedding_list(embedding), face_detect=face
        )

    async def _multi_feature(
        self, image: tuple[str, bytes], max_results: int
    ) -> MultiFeatureResponse:
        found = await self._faces_with_embeddings(image, max_results)
        return MultiFeatureResponse(
            version=__version__,
            feature_info_list=[
                FeatureInfoResult(feature=encode_feature(e), face_detect=f) for f, e in found
            ],
        )

    async def _multi_embeddings(
        self, image: tuple[str, bytes], max_results: int
    ) -> MultiEmbeddingsResponse:
        found = await self._faces_with_embeddings(image, max_results)
        return MultiEmbeddingsResponse(
            version=__version__,
            embeddings_info_list=[
                EmbeddingsInfoResult(embeddings=embedding_list(e), face_detect=f) for f, e in found
            ],
        )

    async def _crop_embedding(self, crop: tuple[str, bytes]) -> tuple[np.ndarray, Any]:
        """The crop's embedding, and its ``face_detect`` (the whole crop: no detection ran)."""
        embedding = (await self.client.embed_crops([crop]))[0]
        size = (await self.model_info())["recognizer"]["input_size"][0]
        return embedding, whole_crop((size, size))

    async def _feature_only(self, crop: tuple[str, bytes]) -> FeatureResponse:
        embedding, face = await self._crop_embedding(crop)
        return FeatureResponse(
            version=__version__, feature=encode_feature(embedding), face_detect=face
        )

    async def _embeddings_only(self, crop: tuple[str, bytes]) -> EmbeddingsResponse:
        embedding, face = await self._crop_embedding(crop)
        return EmbeddingsResponse(
            version=__version__, embeddings=embedding_list(embedding), face_detect=face
        )

    async def _score(self, image1: tuple[str, bytes], image2: tuple[str, bytes]) -> ScoreResponse:
        # Both images in one runner call: one detection pass and one recognition pass.
        found = await self.client.analyze([image1, image2], 1, DetectSortType.AREA, embed=True)
        detects = [
            detect_result(a.faces[0], (a.height, a.width)) if len(a.faces) else no_face()
            for a in found
        ]
        if not all(len(a.faces) for a in found):
            return ScoreResponse(score=0.0, face_detects=detects)
        return ScoreResponse(
            score=cosine(found[0].embeddings[0], found[1].embeddings[0]), face_detects=detects
        )

    # -- JSON endpoints ----------------------------------------------------------------------
    @bentoml.api(route="/v1/detect")
    async def detect(self, body: DetectReqBody, /) -> DetectResponse:
        """Detects many people's faces in one image: box, confidence, 5 landmarks."""

        async def work() -> DetectResponse:
            image = self._b64(body.image)
            return await self._detect(image, body.seq, body.detect_sort_type, body.max_results)

        return await self.answer(work())

    @bentoml.api(route="/v1/feature")
    async def feature(self, body: FeatureReqBody, /) -> FeatureResponse:
        """Extracts the largest face's feature (base64 of little-endian float32) from one image."""

        async def work() -> FeatureResponse:
            return await self._feature(self._b64(body.image))

        return await self.answer(work())

    @bentoml.api(route="/v1/feature-only")
    async def feature_only(self, body: FeatureReqBody, /) -> FeatureResponse:
        """Extracts the feature of one already aligned 112x112 face crop (no detection)."""

        async def work() -> FeatureResponse:
            return await self._feature_only(self._b64(body.image))

        return await self.answer(work())

    @bentoml.api(route="/v1/multi-feature")
    async def multi_feature(self, body: MultiFeatureReqBody, /) -> MultiFeatureResponse:
        """Extracts the features of up to maxResults faces in one image, largest first."""

        async def work() -> MultiFeatureResponse:
            return await self._multi_feature(self._b64(body.image), body.max_results)

        return await self.answer(work())

    @bentoml.api(route="/v1/embeddings")
    async def embeddings(self, body: EmbeddingsReqBody, /) -> EmbeddingsResponse:
        """Extracts the largest face's embedding (a list of floats) from one image."""

        async def work() -> EmbeddingsResponse:
            return await self._embeddings(self._b64(body.image))

        return await self.answer(work())

    @bentoml.api(route="/v1/embeddings-only")
    async def embeddings_only(self, body: EmbeddingsReqBody, /) -> EmbeddingsResponse:
        """Extracts the embedding of one already aligned 112x112 face crop (no detection)."""

        async def work() -> EmbeddingsResponse:
            return await self._embeddings_only(self._b64(body.image))

        return await self.answer(work())

    @bentoml.api(route="/v1/multi-embeddings")
    async def multi_embeddings(self, body: MultiEmbeddingsReqBody, /) -> MultiEmbeddingsResponse:
        """Extracts the embeddings of up to maxResults faces in one image, largest first."""

        async def work() -> MultiEmbeddingsResponse:
            return await self._multi_embeddings(self._b64(body.image), body.max_results)

        return await self.answer(work())

    @bentoml.api(route="/v1/score")
    async def score(self, body: ScoreReqBody, /) -> ScoreResponse:
        """Cosine similarity of the largest faces of two images, in [-1, 1]."""

        async def work() -> ScoreResponse:
            image1 = self._b64(body.image1, "image1")
            image2 = self._b64(body.image2, "image2")
            return await self._score(image1, image2)

        return await self.answer(work())

    @bentoml.api(route="/v1/feature-score")
    async def feature_score(self, body: FeatureScoreReqBody, /) -> FeatureScoreResponse:
        """Cosine similarity of two features, in [-1, 1]."""

        async def work() -> FeatureScoreResponse:
            return FeatureScoreResponse(score=feature_score(body.feature1, body.feature2))

        return await self.answer(work())

    # -- multipart twins ---------------------------------------------------------------------
    @bentoml.api(route="/v1/file/detect")
    async def file_detect(
        self,
        image: Path,
        seq: RequestInt = 0,
        maxResults: MaxResults = 750,  # noqa: N803 - the wire name
        detectSortType: DetectSortTypeValue = 0,  # noqa: N803
    ) -> DetectResponse:
        """The multipart twin of /v1/detect: the image as an uploaded file."""

        async def work() -> DetectResponse:
            return await self._detect(self._file(image), seq, detectSortType, maxResults)

        return await self.answer(work())

    @bentoml.api(route="/v1/file/feature")
    async def file_feature(self, image: Path) -> FeatureResponse:
        """The multipart twin of /v1/feature: the image as an uploaded file."""

        async def work() -> FeatureResponse:
            return await self._feature(self._file(image))

        return await self.answer(work())

    @bentoml.api(route="/v1/file/feature-only")
    async def file_feature_only(self, image: Path) -> FeatureResponse:
        """The multipart twin of /v1/feature-only: the crop as an uploaded file."""

        async def work() -> FeatureResponse:
            return await self._feature_only(self._file(image))

        return await self.answer(work())

    @bentoml.api(route="/v1/file/embeddings")
    async def file_embeddings(self, image: Path) -> EmbeddingsResponse:
        """The multipart twin of /v1/embeddings: the image as an uploaded file."""

        async def work() -> EmbeddingsResponse:
            return await self._embeddings(self._file(image))

        return await self.answer(work())

    @bentoml.api(route="/v1/file/embeddings-only")
    async def file_embeddings_only(self, image: Path) -> EmbeddingsResponse:
        """The multipart twin of /v1/embeddings-only: the crop as an uploaded file."""

        async def work() -> EmbeddingsResponse:
            return await self._embeddings_only(self._file(image))

        return await self.answer(work())

    @bentoml.api(route="/v1/file/score")
    async def file_score(self, image1: Path, image2: Path) -> ScoreResponse:
        """The multipart twin of /v1/score: both images as uploaded files."""

        async def work() -> ScoreResponse:
            first = self._file(image1, "image1")
            second = self._file(image2, "image2")
            return await self._score(first, second)

        return await self.answer(work())

    # -- GET endpoints (FastAPI, mounted at /v1) ---------------------------------------------
    @info_app.get(
        "/health",
        response_model=HealthResponse,
        responses={503: {"model": HealthResponse, "description": "Model runner not ready"}},
    )
    async def health(self) -> JSONResponse:
        """Checks that the server is live: the model runner answers, now (not a cached answer)."""
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT_S):
                self._info = await self.client.info()
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
            body = HealthResponse(status="unavailable", detail=type(exc).__name__)
            return JSONResponse(body.model_dump(), 503, headers={"retry-after": RETRY_AFTER_S})
        return JSONResponse({"status": "ok"})

    @info_app.get("/info/server", response_model=ServerInfo)
    async def server_info(self) -> ServerInfo:
        """The server's basic version information."""
        import insightface

        info = await self.model_info()
        return ServerInfo(
            name=SERVICE_NAME,
            version=__version__,
            bentoml=bentoml.__version__,
            insightface=insightface.__version__,
            onnxruntime=info["onnxruntime"],
            providers=info["providers"],
            device=info["device"],
            package_conflicts=info["package_conflicts"],
            repair_command=info["repair_command"],
        )

    @info_app.get("/info/model", response_model=ModelNames)
    async def model_names(self) -> ModelNames:
        """The name of the model pack being served, and all loaded packs."""
        info = await self.model_info()
        return ModelNames(model_name=info["pack"]["name"], models=[info["pack"]["name"]])

    @info_app.get(
        "/info/model/{model_name}",
        response_model=ModelDetail,
        responses={404: {"model": ErrorMessage, "description": "No such model pack loaded"}},
    )
    async def model_detail(self, model_name: str) -> Any:
        """The configuration of the named model pack."""
        info = await self.model_info()
        pack = info["pack"]
        if model_name != pack["name"]:
            return JSONResponse(
                {"detail": f"model {model_name!r} is not loaded; loaded: [{pack['name']!r}]"}, 404
            )
        return {
            "model_name": pack["name"],
            "tag": pack["tag"],
            "files": [{"name": n, "sha256": h} for n, h in pack["files"].items()],
            "detector": info["detector"],
            "recognizer": info["recognizer"],
            "providers": info["providers"],
            "device": info["device"],
            "match_threshold": pack["match_threshold"],
            "match_threshold_measured": pack["match_threshold_measured"],
        }


# Every POST route by the kind of body it takes: multipart (with its file fields) or JSON.
FILE_FIELDS = {
    "/v1/file/detect": ("image",),
    "/v1/file/feature": ("image",),
    "/v1/file/feature-only": ("image",),
    "/v1/file/embeddings": ("image",),
    "/v1/file/embeddings-only": ("image",),
    "/v1/file/score": ("image1", "image2"),
    **{f"/v1{r.path}": ("image",) for r in gallery_post_routes() if r.path.startswith("/file/")},
}
JSON_ROUTES = [
    *(api.route for api in FaceAPI.apis.values() if api.route not in FILE_FIELDS),
    *(f"/v1{r.path}" for r in gallery_post_routes() if not r.path.startswith("/file/")),
]


def _published_openapi() -> dict[str, Any]:
    return contract_openapi(
        FaceAPI.openapi_spec.asdict(),
        title=SERVICE_NAME,
        version=__version__,
        description=API_DESCRIPTION,
    )


# Outermost first: every answer gets its request id and timings; the docs need no key; the key
# is checked before any body is read, then the in-flight limit (so a slow upload holds a slot:
# buffered bodies are bounded too), the body limit, the body's kind, the error shapes.
FaceAPI.add_asgi_middleware(RequestIdMiddleware)
FaceAPI.add_asgi_middleware(ServerTimingMiddleware)
FaceAPI.add_asgi_middleware(
    DocsMiddleware, build=_published_openapi, title=SERVICE_NAME, version=__version__
)
FaceAPI.add_asgi_middleware(
    ApiKeyMiddleware, keys=settings.load_api_keys(), enabled=settings.auth_enabled
)
FaceAPI.add_asgi_middleware(ConcurrencyLimitMiddleware, max_in_flight=settings.max_concurrency)
FaceAPI.add_asgi_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
FaceAPI.add_asgi_middleware(RequestBodyMiddleware, json_routes=JSON_ROUTES, file_routes=FILE_FIELDS)
FaceAPI.add_asgi_middleware(ErrorShapeMiddleware)
