"""What the reference's face endpoints do, one method each, shared by a JSON endpoint and its
multipart twin: one runner call for the request's image(s), then the contract's response."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from face_api import __version__
from face_api.http.info import ServedModel
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
    DetectResult,
    EmbeddingsInfoResult,
    EmbeddingsResponse,
    FeatureInfoResult,
    FeatureResponse,
    MultiEmbeddingsResponse,
    MultiFeatureResponse,
    ScoreResponse,
)
from face_api.ops.timing import request_timings
from face_api.pipeline.analysis import Analysis, EncodedImage
from face_api.pipeline.faces import DetectSortType
from face_api.pipeline.features import cosine, encode_feature
from face_api.pipeline.images import decode_base64
from face_api.pipeline.quality import Bars


def image_from_base64(text: str, field: str = "image") -> EncodedImage:
    """A JSON body's image: its bytes, named by the field they came in (for a 422)."""
    with request_timings().stage("base64"):
        return field, decode_base64(text, field)


def image_from_file(path: Path, field: str = "image") -> EncodedImage:
    """A multipart upload's image (BentoML has spooled it to ``path``)."""
    return field, path.read_bytes()


class FaceEndpoints:
    """The face endpoints' work on the runner; ``service.py`` declares the endpoints."""

    def __init__(
        self, runner: RunnerClient, served: ServedModel, bars: Bars, max_results_cap: int
    ) -> None:
        self.runner = runner
        self.served = served
        self.bars = bars  # the quality grades' bars (FACE_QUALITY_*)
        self.max_results_cap = max_results_cap  # FACE_MAX_RESULTS_CAP

    async def analyze(
        self,
        image: EncodedImage,
        max_results: int,
        embed: bool,
        quality: bool = False,
        sort_type: DetectSortType = DetectSortType.AREA,
    ) -> Analysis:
        """One image's faces (at most ``max_results``, within the server's cap)."""
        limit = min(max_results, self.max_results_cap)
        (found,) = await self.runner.analyze([image], limit, sort_type, embed, quality)
        return found

    def face_detects(self, found: Analysis) -> list[DetectResult]:
        return detect_results(found, self.bars)

    # -- one image, its faces ------------------------------------------------------------------
    async def detect(
        self, image: EncodedImage, seq: int, sort_type: int, max_results: int, quality: bool
    ) -> DetectResponse:
        found = await self.analyze(image, max_results, False, quality, DetectSortType(sort_type))
        return DetectResponse(seq=seq, faces=self.face_detects(found))

    async def feature(self, image: EncodedImage, quality: bool) -> FeatureResponse:
        found = await self._faces(image, 1, quality)
        if not found:
            return FeatureResponse(version=__version__, feature="", face_detect=no_face())
        face, embedding = found[0]
        return FeatureResponse(
            version=__version__, feature=encode_feature(embedding), face_detect=face
        )

    async def embeddings(self, image: EncodedImage, quality: bool) -> EmbeddingsResponse:
        found = await self._faces(image, 1, quality)
        if not found:
            return EmbeddingsResponse(version=__version__, embeddings=[], face_detect=no_face())
        face, embedding = found[0]
        return EmbeddingsResponse(
            version=__version__, embeddings=embedding_list(embedding), face_detect=face
        )

    async def multi_feature(self, image: EncodedImage, max_results: int) -> MultiFeatureResponse:
        found = await self._faces(image, max_results)
        return MultiFeatureResponse(
            version=__version__,
            feature_info_list=[
                FeatureInfoResult(feature=encode_feature(e), face_detect=f) for f, e in found
            ],
        )

    async def multi_embeddings(
        self, image: EncodedImage, max_results: int
    ) -> MultiEmbeddingsResponse:
        found = await self._faces(image, max_results)
        return MultiEmbeddingsResponse(
            version=__version__,
            embeddings_info_list=[
                EmbeddingsInfoResult(embeddings=embedding_list(e), face_detect=f) for f, e in found
            ],
        )

    # -- an aligned crop: no detection ---------------------------------------------------------
    async def feature_only(self, crop: EncodedImage) -> FeatureResponse:
        embedding, face = await self._crop_embedding(crop)
        return FeatureResponse(
            version=__version__, feature=encode_feature(embedding), face_detect=face
        )

    async def embeddings_only(self, crop: EncodedImage) -> EmbeddingsResponse:
        embedding, face = await self._crop_embedding(crop)
        return EmbeddingsResponse(
            version=__version__, embeddings=embedding_list(embedding), face_detect=face
        )

    # -- two images ----------------------------------------------------------------------------
    async def score(self, image1: EncodedImage, image2: EncodedImage) -> ScoreResponse:
        # Both images in one runner call: one detection pass and one recognition pass.
        found = await self.runner.analyze([image1, image2], 1, DetectSortType.AREA, embed=True)
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
    async def _faces(
        self, image: EncodedImage, max_results: int, quality: bool = False
    ) -> list[tuple[DetectResult, np.ndarray]]:
        """The image's faces, largest first, each with its embedding."""
        found = await self.analyze(image, max_results, True, quality)
        if not len(found.faces):
            return []
        return list(zip(self.face_detects(found), found.embeddings, strict=True))

    async def _crop_embedding(self, crop: EncodedImage) -> tuple[np.ndarray, DetectResult]:
        """The crop's embedding, and its ``face_detect`` (the whole crop: no detection ran)."""
        embedding = (await self.runner.embed_crops([crop]))[0]
        size = await self.served.crop_size()
        return embedding, whole_crop((size, size))
