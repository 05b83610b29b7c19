"""What the reference's face endpoints do, one method each, shared by a JSON endpoint and its
multipart twin: one runner call for the request's image(s), then the contract's response."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from face_api import __version__
from face_api.http.results import (
    detect_result,
    detect_results,
    embedding_list,
    no_face,
    whole_crop,
)
from face_api.http.runner_client import RunnerClient
from face_api.http.schemas import (
    DetectResponse,
    EmbeddingsInfoResult,
    EmbeddingsResponse,
    FeatureInfoResult,
    FeatureResponse,
    ModelNames,
    MultiEmbeddingsResponse,
    MultiFeatureResponse,
    ScoreResponse,
    ServerInfo,
)
from face_api.ops.settings import get_settings
from face_api.ops.timing import request_timings
from face_api.pipeline.analysis import Analysis, Image
from face_api.pipeline.faces import DetectSortType
from face_api.pipeline.features import cosine, encode_feature
from face_api.pipeline.images import decode_base64


def image_from_base64(text: str, field: str = "image") -> Image:
    """A JSON body's image: its bytes, named by the field they came in (for a 422)."""
    with request_timings().stage("base64"):
        return field, decode_base64(text, field)


def image_from_file(path: Path, field: str = "image") -> Image:
    """A multipart upload's image (BentoML has spooled it to ``path``)."""
    return field, path.read_bytes()


class FaceRequests:
    """The face endpoints' work on a ``RunnerClient``; the service declares the endpoints."""

    def __init__(self, client: RunnerClient) -> None:
        self.client = client
        self._info: dict[str, Any] | None = None

    async def model_info(self) -> dict[str, Any]:
        """The runner's pack, models and providers (asked once, then kept)."""
        if self._info is None:
            self._info = await self.client.info()
        return self._info

    async def refresh_model_info(self) -> dict[str, Any]:
        """Asks the runner now: a health probe must see a live runner, not a kept answer."""
        self._info = await self.client.info()
        return self._info

    # -- what the server runs ------------------------------------------------------------------
    async def server_info(self, service_name: str) -> ServerInfo:
        import bentoml
        import insightface

        info = await self.model_info()
        return ServerInfo(
            name=service_name,
            version=__version__,
            bentoml=bentoml.__version__,
            insightface=insightface.__version__,
            onnxruntime=info["onnxruntime"],
            providers=info["providers"],
            device=info["device"],
            package_conflicts=info["package_conflicts"],
            repair_command=info["repair_command"],
        )

    async def model_names(self) -> ModelNames:
        name = (await self.model_info())["pack"]["name"]
        return ModelNames(model_name=name, models=[name])

    async def model_detail(self, model_name: str) -> dict[str, Any] | None:
        """The pack's configuration (a ``ModelDetail``); None when ``model_name`` is not served."""
        info = await self.model_info()
        pack = info["pack"]
        if model_name != pack["name"]:
            return None
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

    # -- one image, its faces ------------------------------------------------------------------
    async def detect(
        self, image: Image, seq: int, sort_type: int, max_results: int, quality: bool = False
    ) -> DetectResponse:
        found = await self._analyze(
            image, max_results, DetectSortType(sort_type), embed=False, quality=quality
        )
        return DetectResponse(seq=seq, faces=detect_results(found))

    async def feature(self, image: Image, quality: bool = False) -> FeatureResponse:
        found = await self._faces_with_embeddings(image, 1, quality)
        if not found:
            return FeatureResponse(version=__version__, feature="", face_detect=no_face())
        face, embedding = found[0]
        return FeatureResponse(
            version=__version__, feature=encode_feature(embedding), face_detect=face
        )

    async def embeddings(self, image: Image, quality: bool = False) -> EmbeddingsResponse:
        found = await self._faces_with_embeddings(image, 1, quality)
        if not found:
            return EmbeddingsResponse(version=__version__, embeddings=[], face_detect=no_face())
        face, embedding = found[0]
        return EmbeddingsResponse(
            version=__version__, embeddings=embedding_list(embedding), face_detect=face
        )

    async def multi_feature(self, image: Image, max_results: int) -> MultiFeatureResponse:
        found = await self._faces_with_embeddings(image, max_results)
        return MultiFeatureResponse(
            version=__version__,
            feature_info_list=[
                FeatureInfoResult(feature=encode_feature(e), face_detect=f) for f, e in found
            ],
        )

    async def multi_embeddings(self, image: Image, max_results: int) -> MultiEmbeddingsResponse:
        found = await self._faces_with_embeddings(image, max_results)
        return MultiEmbeddingsResponse(
            version=__version__,
            embeddings_info_list=[
                EmbeddingsInfoResult(embeddings=embedding_list(e), face_detect=f) for f, e in found
            ],
        )

    # -- an aligned crop: no detection ---------------------------------------------------------
    async def feature_only(self, crop: Image) -> FeatureResponse:
        embedding, face = await self._crop_embedding(crop)
        return FeatureResponse(
            version=__version__, feature=encode_feature(embedding), face_detect=face
        )

    async def embeddings_only(self, crop: Image) -> EmbeddingsResponse:
        embedding, face = await self._crop_embedding(crop)
        return EmbeddingsResponse(
            version=__version__, embeddings=embedding_list(embedding), face_detect=face
        )

    # -- two images ----------------------------------------------------------------------------
    async def score(self, image1: Image, image2: Image) -> ScoreResponse:
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

    # -- internals -----------------------------------------------------------------------------
    async def _analyze(
        self,
        image: Image,
        max_results: int,
        sort_type: DetectSortType,
        embed: bool,
        quality: bool = False,
    ) -> Analysis:
        limit = min(max_results, get_settings().max_results_cap)
        (found,) = await self.client.analyze([image], limit, sort_type, embed, quality)
        return found

    async def _faces_with_embeddings(
        self, image: Image, max_results: int, quality: bool = False
    ) -> list[tuple[Any, np.ndarray]]:
        found = await self._analyze(image, max_results, DetectSortType.AREA, True, quality)
        if not len(found.faces):
            return []
        return list(zip(detect_results(found), found.embeddings, strict=True))

    async def _crop_embedding(self, crop: Image) -> tuple[np.ndarray, Any]:
        """The crop's embedding, and its ``face_detect`` (the whole crop: no detection ran)."""
        embedding = (await self.client.embed_crops([crop]))[0]
        size = (await self.model_info())["recognizer"]["input_size"][0]
        return embedding, whole_crop((size, size))
