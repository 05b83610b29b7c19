"""What the reference's face endpoints do, one method each, shared by a JSON endpoint and its
multipart twin: one runner call for the request's image(s), then the contract's response; and how
faces become the reference's response objects (the gallery routes use them too)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from face_api import __version__
from face_api.http.info import ServedModel
from face_api.http.runner_client import RunnerClient
from face_api.http.schemas import (
    BoundingBox,
    DetectResponse,
    DetectResult,
    EmbeddingsInfoResult,
    EmbeddingsResponse,
    FaceQuality,
    FeatureInfoResult,
    FeatureResponse,
    Landmark,
    MultiEmbeddingsResponse,
    MultiFeatureResponse,
    ScoreResponse,
)
from face_api.ops.context import current
from face_api.ops.runner_hop import BOX, SCORE, Analysis, DetectSortType, EncodedImage, FaceQuery
from face_api.pipeline import quality as face_quality
from face_api.pipeline.faces import landmarks_of
from face_api.pipeline.features import cosine, encode_feature
from face_api.pipeline.images import decode_base64


def image_from_base64(text: str, field: str = "image") -> EncodedImage:
    """A JSON body's image: its bytes, named by the field they came in (for a 422)."""
    with current().stage("base64"):
        return field, decode_base64(text, field)


def image_from_file(path: Path, field: str = "image") -> EncodedImage:
    """A multipart upload's image (BentoML has spooled it to ``path``)."""
    return field, path.read_bytes()


class FaceEndpoints:
    """The face endpoints' work on the runner; ``service.py`` declares the endpoints."""

    def __init__(self, runner: RunnerClient, served: ServedModel, bars: face_quality.Bars) -> None:
        self.runner = runner
        self.served = served
        self.bars = bars  # the quality grades' bars (FACE_QUALITY_*)

    # -- one image, its faces ------------------------------------------------------------------
    async def detect(
        self, image: EncodedImage, seq: int, sort_type: int, max_results: int, quality: bool
    ) -> DetectResponse:
        query = FaceQuery(
            max_faces=max_results, sort_type=DetectSortType(sort_type), embed=False, quality=quality
        )
        (found,) = await self.runner.analyze([image], query)
        return DetectResponse(seq=seq, faces=detect_results(found, self.bars))

    async def feature(self, image: EncodedImage, quality: bool) -> FeatureResponse:
        (found,) = await self.runner.analyze([image], FaceQuery(max_faces=1, quality=quality))
        if not len(found.faces):
            return FeatureResponse(version=__version__, feature="", face_detect=DetectResult())
        return FeatureResponse(
            version=__version__,
            feature=encode_feature(found.embeddings[0]),
            face_detect=detect_results(found, self.bars)[0],
        )

    async def embeddings(self, image: EncodedImage, quality: bool) -> EmbeddingsResponse:
        (found,) = await self.runner.analyze([image], FaceQuery(max_faces=1, quality=quality))
        if not len(found.faces):
            return EmbeddingsResponse(
                version=__version__, embeddings=[], face_detect=DetectResult()
            )
        return EmbeddingsResponse(
            version=__version__,
            embeddings=embedding_list(found.embeddings[0]),
            face_detect=detect_results(found, self.bars)[0],
        )

    async def multi_feature(self, image: EncodedImage, max_results: int) -> MultiFeatureResponse:
        (found,) = await self.runner.analyze([image], FaceQuery(max_faces=max_results))
        faces = zip(detect_results(found, self.bars), found.embeddings, strict=True)
        return MultiFeatureResponse(
            version=__version__,
            feature_info_list=[
                FeatureInfoResult(feature=encode_feature(e), face_detect=f) for f, e in faces
            ],
        )

    async def multi_embeddings(
        self, image: EncodedImage, max_results: int
    ) -> MultiEmbeddingsResponse:
        (found,) = await self.runner.analyze([image], FaceQuery(max_faces=max_results))
        faces = zip(detect_results(found, self.bars), found.embeddings, strict=True)
        return MultiEmbeddingsResponse(
            version=__version__,
            embeddings_info_list=[
                EmbeddingsInfoResult(embeddings=embedding_list(e), face_detect=f) for f, e in faces
            ],
        )

    # -- an aligned crop: no detection ---------------------------------------------------------
    async def feature_only(self, crop: EncodedImage) -> FeatureResponse:
        (embedding,) = await self.runner.embed_crops([crop])
        size = await self.served.crop_size()
        return FeatureResponse(
            version=__version__, feature=encode_feature(embedding), face_detect=whole_crop(size)
        )

    async def embeddings_only(self, crop: EncodedImage) -> EmbeddingsResponse:
        (embedding,) = await self.runner.embed_crops([crop])
        size = await self.served.crop_size()
        return EmbeddingsResponse(
            version=__version__,
            embeddings=embedding_list(embedding),
            face_detect=whole_crop(size),
        )

    # -- two images ----------------------------------------------------------------------------
    async def score(self, image1: EncodedImage, image2: EncodedImage) -> ScoreResponse:
        # Both images in one runner call: one detection pass and one recognition pass.
        found = await self.runner.analyze([image1, image2], FaceQuery(max_faces=1))
        detects = [
            detect_result(a.faces[0], (a.height, a.width)) if len(a.faces) else DetectResult()
            for a in found
        ]
        if not all(len(a.faces) for a in found):
            return ScoreResponse(score=0.0, face_detects=detects)
        return ScoreResponse(
            score=cosine(found[0].embeddings[0], found[1].embeddings[0]), face_detects=detects
        )


# -- faces as the reference's response objects -------------------------------------------------
def quality_of(face: np.ndarray, measures: np.ndarray, bars: face_quality.Bars) -> FaceQuality:
    judged = bars.judge(face, measures)
    m = dict(zip(face_quality.MEASURES, (float(v) for v in measures), strict=True))
    return FaceQuality(
        grade=judged.grade.value,
        reasons=[r.value for r in judged.reasons],
        recognizability=round(m["recognizability"], 3),
        face_size=round(face_quality.face_size(face), 1),
        interocular_distance=round(face_quality.interocular(face), 1),
        yaw=round(m["yaw"], 1),
        pitch=round(m["pitch"], 1),
        roll=round(m["roll"], 1),
        sharpness=round(m["sharpness"], 3),
        brightness=round(m["brightness"], 3),
        motion_blur=round(m["motion_blur"], 3),
        detector_score=float(face[SCORE]),
        embedding_norm=round(m["embedding_norm"], 3),
    )


def detect_result(
    face: np.ndarray, image_shape: tuple[int, ...], quality: FaceQuality | None = None
) -> DetectResult:
    """One detection row as a ``DetectResult``: integer pixels clipped to the image, with its
    ``quality`` where the request asked for it."""
    height, width = image_shape[:2]
    # the box and the 5 landmarks as (x, y) pairs, rounded and clipped to the image at once
    points = np.concatenate([face[BOX].reshape(2, 2), landmarks_of(face[np.newaxis])[0]])
    xs, ys = np.clip(np.rint(points), 0, [width, height]).astype(int).T.tolist()
    return DetectResult(
        processed=True,
        confidence=float(face[SCORE]),
        bounding_box=BoundingBox(left=xs[0], top=ys[0], right=xs[1], bottom=ys[1]),
        landmarks=[Landmark(x=x, y=y) for x, y in zip(xs[2:], ys[2:], strict=True)],
        quality=quality,
    )


def detect_results(found: Analysis, bars: face_quality.Bars) -> list[DetectResult]:
    """An analysed image's faces, each with its quality, judged by ``bars``, when it was
    measured."""
    shape = (found.height, found.width)
    if found.quality is None:
        return [detect_result(f, shape) for f in found.faces]
    return [
        detect_result(f, shape, quality_of(f, m, bars))
        for f, m in zip(found.faces, found.quality, strict=True)
    ]


def whole_crop(size: int) -> DetectResult:
    """``feature-only``: no detection ran, the box is the whole aligned crop."""
    return DetectResult(bounding_box=BoundingBox(left=0, top=0, right=size, bottom=size))


def embedding_list(embedding: np.ndarray) -> list[float]:
    return [float(v) for v in embedding]
