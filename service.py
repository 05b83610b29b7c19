"""The face API's BentoML service: each /v1 path of shared/api-reference.md declared once.

POSTs are native BentoML APIs (so ``bentoml.SyncHTTPClient`` can call them); the GETs
(``face_api/http/info.py``) and the galleries' routes (``face_api/galleries/routes.py``) live in a
FastAPI app mounted at /v1. What an endpoint does is ``face_api/http/face_endpoints.py``;
``@handled`` gives it the request deadline and the contract's errors, and the edge's layers
(``face_api/http/edge.py``) come before it. The models run in ``InsightFaceRunner``, the
galleries' store in ``GalleryStoreService`` (``runners/``). docs/architecture.md, "How it works",
draws the whole path.
"""

# ruff: noqa: E402 - the settings come first: OpenCV's decode bound must be set before it loads.
from __future__ import annotations

from face_api.ops.settings import get_settings
from face_api.ops.startup import bound_image_decoding

# Read once, here: what the decorators below and the objects FaceAPI builds need.
settings = get_settings()
# Before anything below loads OpenCV, and so in every worker the server starts from here.
bound_image_decoding(settings.max_pixels)

import logging
from pathlib import Path
from typing import Any

import bentoml
from fastapi import FastAPI, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from face_api import __version__
from face_api.galleries.calls import GalleryCalls
from face_api.galleries.routes import post_routes as gallery_post_routes
from face_api.galleries.routes import router as gallery_router
from face_api.galleries.store_client import GalleryStoreClient, InProcessCalls
from face_api.http.admission import METRICS_PATH, PUBLIC_GET_PATHS
from face_api.http.edge import edge_layers
from face_api.http.error_responses import handled, validation_error_response
from face_api.http.face_endpoints import FaceEndpoints, image_from_base64, image_from_file
from face_api.http.info import ServedModel
from face_api.http.info import router as info_router
from face_api.http.observability import label_requests_by_route
from face_api.http.openapi import contract_openapi
from face_api.http.runner_client import RunnerClient
from face_api.http.schemas import (
    CropReqBody,
    DetectReqBody,
    DetectResponse,
    DetectSortTypeValue,
    EmbeddingsReqBody,
    EmbeddingsResponse,
    FeatureReqBody,
    FeatureResponse,
    FeatureScoreReqBody,
    FeatureScoreResponse,
    MaxResults,
    MultiEmbeddingsReqBody,
    MultiEmbeddingsResponse,
    MultiFeatureReqBody,
    MultiFeatureResponse,
    RequestInt,
    ScoreReqBody,
    ScoreResponse,
)
from face_api.ops.limits import BACKSTOP_TIMEOUT_S, DETECT_MAX_RESULTS
from face_api.ops.startup import freeze_heap, refuse_to_start, start_worker
from face_api.pipeline.features import feature_score
from face_api.pipeline.quality import Bars
from runners.gallery_service import GalleryStoreService
from runners.insightface_runner import InsightFaceRunner

SERVICE_NAME = "face-api"
log = logging.getLogger("face_api")
AUTH_OFF = (
    "API key checks are off (FACE_API_AUTH=off): anyone who can reach this server can enroll, "
    "search and delete faces; only loopback and FACE_ALLOWED_HOSTS names are served, and no "
    "browser page of another site"
)

# Its routes are merged into the service's /docs.json; it serves no docs of its own.
info_app = FastAPI(
    title="face-api info",
    version=__version__,
    openapi_url=None,
    docs_url=None,
    redoc_url=None,
    # Operation ids are the routes' names (`server_info`, not `server_info_info_server_get`):
    # generated clients name their methods by them.
    generate_unique_id_function=lambda route: route.name,
    # A trailing slash is no route (404 at the edge), never a redirect that keeps the method.
    redirect_slashes=False,
)
info_app.add_exception_handler(RequestValidationError, validation_error_response)
info_app.include_router(gallery_router)
info_app.include_router(info_router)
API_DESCRIPTION = (
    "Face detection and recognition: detect faces (boxes, scores, 5 landmarks), extract features "
    "and embeddings, compare faces (cosine score), and galleries of enrolled faces for 1:N search "
    "(/v1/galleries). Every call except GET /v1/health and /v1/info/... needs the API key, as an "
    "`x-api-key` header or `Authorization: Bearer KEY`. Errors: 401 missing or unknown key, 413 "
    "body over the limit, 422 invalid input in FastAPI's shape naming the field, 429 too many "
    "requests in flight, 503 inference backend unavailable or timed out (both with Retry-After)."
)


# What the Bento's image adds to bentofile.yaml's (base image, pinned requirements):
# - pyproject.toml, copied before BentoML's Dockerfile installs the requirements. That step runs in
#   ./src when the folder exists by then, and only there does uv read pyproject.toml's [tool.uv]
#   overrides, which drop insightface's own `onnxruntime` and `opencv-python`. Without them both
#   come back and overwrite onnxruntime-gpu's and the headless OpenCV's files.
# - /data, the galleries' folder in a container (FACE_GALLERY_DIR's default there), owned by the
#   image's user and readable by it only (biometric templates).
IMAGE = (
    bentoml.images.Image(lock_python_packages=False)
    .run("mkdir -p /data && chown $BENTO_USER:$BENTO_USER /data && chmod 700 /data")
    .build_include("pyproject.toml")
)


@bentoml.service(
    name="FaceAPI",
    image=IMAGE,
    workers=settings.api_workers,
    # Our own deadline (`@handled`) fires first with a 503 in the contract's shape; BentoML's 504
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
        warnings = [] if settings.auth_enabled else [AUTH_OFF]
        for warning in warnings:
            log.warning("!!! %s !!!", warning)
        runner = RunnerClient(self.runner, settings.max_results_cap)
        # What the endpoints and the gallery routes (their ``GalleryHost``) work with.
        self.served = ServedModel(runner, SERVICE_NAME, warnings)
        self.faces = FaceEndpoints(runner, self.served, Bars.from_settings(settings))
        # Milvus Lite is the gallery service's file; a Milvus server each worker reaches itself.
        if settings.gallery_uri:
            calls: Any = InProcessCalls(GalleryCalls(settings))
        else:
            calls = self.gallery_store.to_async
        self.galleries = GalleryStoreClient(calls, self.served, settings.gallery_metadata_max_bytes)
        freeze_heap()

    # -- JSON endpoints ------------------------------------------------------------------------
    @bentoml.api(route="/v1/detect")
    @handled
    async def detect(self, body: DetectReqBody, /) -> DetectResponse:
        """Detects many people's faces in one image: box, confidence, 5 landmarks."""
        image = image_from_base64(body.image)
        return await self.faces.detect(
            image, body.seq, body.detect_sort_type, body.max_results, body.return_quality
        )

    @bentoml.api(route="/v1/feature")
    @handled
    async def feature(self, body: FeatureReqBody, /) -> FeatureResponse:
        """Extracts the largest face's feature (base64 of little-endian float32) from one image."""
        return await self.faces.feature(image_from_base64(body.image), body.return_quality)

    @bentoml.api(route="/v1/feature-only")
    @handled
    async def feature_only(self, body: CropReqBody, /) -> FeatureResponse:
        """Extracts the feature of one already aligned 112x112 face crop (no detection)."""
        return await self.faces.feature_only(image_from_base64(body.image))

    @bentoml.api(route="/v1/multi-feature")
    @handled
    async def multi_feature(self, body: MultiFeatureReqBody, /) -> MultiFeatureResponse:
        """Extracts the features of up to maxResults faces in one image, largest first."""
        return await self.faces.multi_feature(image_from_base64(body.image), body.max_results)

    @bentoml.api(route="/v1/embeddings")
    @handled
    async def embeddings(self, body: EmbeddingsReqBody, /) -> EmbeddingsResponse:
        """Extracts the largest face's embedding (a list of floats) from one image."""
        return await self.faces.embeddings(image_from_base64(body.image), body.return_quality)

    @bentoml.api(route="/v1/embeddings-only")
    @handled
    async def embeddings_only(self, body: CropReqBody, /) -> EmbeddingsResponse:
        """Extracts the embedding of one already aligned 112x112 face crop (no detection)."""
        return await self.faces.embeddings_only(image_from_base64(body.image))

    @bentoml.api(route="/v1/multi-embeddings")
    @handled
    async def multi_embeddings(self, body: MultiEmbeddingsReqBody, /) -> MultiEmbeddingsResponse:
        """Extracts the embeddings of up to maxResults faces in one image, largest first."""
        return await self.faces.multi_embeddings(image_from_base64(body.image), body.max_results)

    @bentoml.api(route="/v1/score")
    @handled
    async def score(self, body: ScoreReqBody, /) -> ScoreResponse:
        """Cosine similarity of the largest faces of two images, in [-1, 1]."""
        image1 = image_from_base64(body.image1, "image1")
        return await self.faces.score(image1, image_from_base64(body.image2, "image2"))

    @bentoml.api(route="/v1/feature-score")
    @handled
    async def feature_score(self, body: FeatureScoreReqBody, /) -> FeatureScoreResponse:
        """Cosine similarity of two features, in [-1, 1]."""
        return FeatureScoreResponse(score=feature_score(body.feature1, body.feature2))

    # -- multipart twins: the image(s) as uploaded files ---------------------------------------
    @bentoml.api(route="/v1/file/detect")
    @handled
    async def file_detect(
        self,
        image: Path,
        seq: RequestInt = 0,
        maxResults: MaxResults = DETECT_MAX_RESULTS,  # noqa: N803 - the wire name
        detectSortType: DetectSortTypeValue = 0,  # noqa: N803
        returnQuality: bool = False,  # noqa: N803
    ) -> DetectResponse:
        """The multipart twin of /v1/detect: the image as an uploaded file."""
        image_ = image_from_file(image)
        return await self.faces.detect(image_, seq, detectSortType, maxResults, returnQuality)

    @bentoml.api(route="/v1/file/feature")
    @handled
    async def file_feature(
        self,
        image: Path,
        returnQuality: bool = False,  # noqa: N803 - the wire name (a form value: lax)
    ) -> FeatureResponse:
        """The multipart twin of /v1/feature: the image as an uploaded file."""
        return await self.faces.feature(image_from_file(image), returnQuality)

    @bentoml.api(route="/v1/file/feature-only")
    @handled
    async def file_feature_only(self, image: Path) -> FeatureResponse:
        """The multipart twin of /v1/feature-only: the crop as an uploaded file."""
        return await self.faces.feature_only(image_from_file(image))

    @bentoml.api(route="/v1/file/embeddings")
    @handled
    async def file_embeddings(
        self,
        image: Path,
        returnQuality: bool = False,  # noqa: N803 - the wire name (a form value: lax)
    ) -> EmbeddingsResponse:
        """The multipart twin of /v1/embeddings: the image as an uploaded file."""
        return await self.faces.embeddings(image_from_file(image), returnQuality)

    @bentoml.api(route="/v1/file/embeddings-only")
    @handled
    async def file_embeddings_only(self, image: Path) -> EmbeddingsResponse:
        """The multipart twin of /v1/embeddings-only: the crop as an uploaded file."""
        return await self.faces.embeddings_only(image_from_file(image))

    @bentoml.api(route="/v1/file/score")
    @handled
    async def file_score(self, image1: Path, image2: Path) -> ScoreResponse:
        """The multipart twin of /v1/score: both images as uploaded files."""
        first = image_from_file(image1, "image1")
        return await self.faces.score(first, image_from_file(image2, "image2"))


def _file_fields() -> dict[str, tuple[str, ...]]:
    """Every multipart POST route and its file fields, as the endpoints declare them: a
    ``Path`` parameter of a BentoML API, an ``UploadFile`` of a gallery route."""
    routes = {}
    for api in FaceAPI.apis.values():
        files = tuple(n for n, f in api.input_spec.model_fields.items() if f.annotation is Path)
        if files:
            routes[api.route] = files
    for route in gallery_post_routes():
        files = tuple(
            p.name for p in route.dependant.body_params if p.field_info.annotation is UploadFile
        )
        if files:
            routes[f"/v1{route.path}"] = files
    return routes


# Every POST route by the kind of body it takes: multipart (with its file fields) or JSON.
FILE_FIELDS = _file_fields()
JSON_ROUTES = [
    *(api.route for api in FaceAPI.apis.values() if api.route not in FILE_FIELDS),
    *(f"/v1{r.path}" for r in gallery_post_routes() if f"/v1{r.path}" not in FILE_FIELDS),
]


def _published_openapi() -> dict[str, Any]:
    return contract_openapi(
        FaceAPI.openapi_spec.asdict(),
        title=SERVICE_NAME,
        version=__version__,
        description=API_DESCRIPTION,
    )


for layer, arguments in edge_layers(
    settings,
    docs=_published_openapi,
    title=SERVICE_NAME,
    version=__version__,
    json_routes=JSON_ROUTES,
    file_routes=FILE_FIELDS,
):
    FaceAPI.add_asgi_middleware(layer, **arguments)

# /metrics names each request by its route's template, whichever service of this process served
# it, and every other path "unmatched".
label_requests_by_route(
    [
        *(
            api.route
            for service in (FaceAPI, InsightFaceRunner, GalleryStoreService)
            for api in service.apis.values()
        ),
        *(
            f"/v1{route.path}"
            for router in (gallery_router, info_router)
            for route in router.routes
            if isinstance(route, APIRoute)
        ),
        *PUBLIC_GET_PATHS,
        METRICS_PATH,
    ]
)
