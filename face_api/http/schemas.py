"""Request and response bodies, key for key as ``shared/api-reference.md`` shows them.

Python names are snake_case; the wire names (``maxResults``, ``boundingBox``, but also the
reference's own snake_case ``face_detect``) are aliases, used both for reading and writing.
"""

from __future__ import annotations

from functools import partial
from operator import is_
from typing import Annotated, Literal

from annotated_types import Ge, Le
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, StrictBool

from face_api.ops.limits import DETECT_MAX_RESULTS, FACES_MAX_RESULTS, MAX_RESULTS
from face_api.ops.runner_hop import DetectorInfo, RecognizerInfo


def _json_integer(value: object) -> object:
    """A JSON Schema integer: a number with no fractional part (``10`` or ``10.0``), never
    ``true``, ``1.5`` or ``"10"``."""
    if type(value) is float and value.is_integer():
        return int(value)
    if type(value) is not int:  # `Literal` alone would take True as 1
        raise ValueError("Input should be a valid integer")
    return value


# Numbers must be JSON integers, as the document's `"type": "integer"` says: `true`, `1.5` or
# `"10"` are a 422, not silently coerced (multipart fields arrive as text and BentoML decodes them
# as JSON first, so `maxResults=10` still works).
# (The validator comes last, so that it runs first and bounds added around this type still
# reach the document as `minimum`/`maximum`.)
RequestInt = Annotated[int, Strict(), BeforeValidator(_json_integer)]
# A multipart twin's maxResults (the JSON bodies bound theirs on the field).
MaxResults = Annotated[int, Strict(), Ge(1), Le(MAX_RESULTS), BeforeValidator(_json_integer)]
DetectSortTypeValue = Annotated[Literal[0, 1, 2], BeforeValidator(_json_integer)]


class WireModel(BaseModel):
    model_config = ConfigDict(
        populate_by_name=True, serialize_by_alias=True, validate_by_alias=True, extra="ignore"
    )


# --- requests -------------------------------------------------------------------------------
# A body that takes exactly one of these keys: the published document splits it into one schema
# per key (``openapi.py``).
EXACTLY_ONE_OF = "x-exactly-one-of"
# What the document states of an image field: a non-empty text of base64 (its bytes an image).
IMAGE_DOC = {"minLength": 1, "pattern": r"\S", "contentEncoding": "base64"}
Base64Image = Field(
    description="base64 encoded image (standard alphabet; a data: URI prefix is ok)",
    json_schema_extra=IMAGE_DOC,
)


ReturnQuality = Field(
    False, alias="returnQuality", description="add each face's quality (grade, reasons, measures)"
)
# A response key sent only when its request asked for it; the published document keeps it out
# of the answer's required keys.
SENT_WHEN_ASKED = {"x-sent-when": "returnQuality"}


class DetectReqBody(WireModel):
    seq: RequestInt = Field(0, description="echoed back in the response")
    max_results: RequestInt = Field(DETECT_MAX_RESULTS, alias="maxResults", ge=1, le=MAX_RESULTS)
    detect_sort_type: DetectSortTypeValue = Field(
        0,
        alias="detectSortType",
        description="0: largest box first, 1: highest confidence first, 2: left to right",
    )
    image: str = Base64Image
    return_quality: StrictBool = ReturnQuality


class FeatureReqBody(WireModel):
    image: str = Base64Image
    return_quality: StrictBool = ReturnQuality


class EmbeddingsReqBody(WireModel):
    image: str = Base64Image
    return_quality: StrictBool = ReturnQuality


class CropReqBody(WireModel):
    """An already aligned face crop (``/v1/feature-only``, ``/v1/embeddings-only``)."""

    image: str = Field(
        description="base64 of an aligned 112x112 face crop (PNG or JPEG)",
        json_schema_extra=IMAGE_DOC,
    )


class MultiFeatureReqBody(WireModel):
    image: str = Base64Image
    max_results: RequestInt = Field(FACES_MAX_RESULTS, alias="maxResults", ge=1, le=MAX_RESULTS)


class MultiEmbeddingsReqBody(MultiFeatureReqBody):
    pass


class ScoreReqBody(WireModel):
    image1: str = Base64Image
    image2: str = Base64Image


class FeatureScoreReqBody(WireModel):
    feature1: str = Field(
        description="base64 of little-endian float32 values, as /v1/feature gives"
    )
    feature2: str = Field(
        description="base64 of little-endian float32 values, as /v1/feature gives"
    )


# --- responses ------------------------------------------------------------------------------
class BoundingBox(WireModel):
    left: int = 0
    top: int = 0
    right: int = 0
    bottom: int = 0


class Landmark(WireModel):
    x: int = 0
    y: int = 0


QualityGrade = Literal["low", "medium", "high"]
QualityReason = Literal[
    "SMALL_FACE",
    "LOW_CONFIDENCE",
    "EXTREME_POSE",
    "LOW_RECOGNIZABILITY",
    "LOW_SHARPNESS",
    "MOTION_BLUR",
    "LOW_BRIGHTNESS",
    "OVEREXPOSED",
]


class FaceQuality(WireModel):
    """A face's quality verdict and the measures behind it (face_api/pipeline/quality.py)."""

    grade: QualityGrade = Field(
        description="high, medium or low: how sure the face is to be recognised (AUTO enrolls "
        "medium and high)"
    )
    reasons: list[QualityReason] = Field(
        description="why it is below high, the worst first; LOW_SHARPNESS, MOTION_BLUR, "
        "LOW_BRIGHTNESS and OVEREXPOSED name the likely cause of a LOW_RECOGNIZABILITY"
    )
    recognizability: float = Field(
        description="0-1: the cosine this face's embedding is expected to keep to the same face "
        "in good condition (from the embedding's norm, the pose and the motion blur)"
    )
    face_size: float = Field(alias="faceSize", description="the box's shorter side, pixels")
    interocular_distance: float = Field(alias="interocularDistance", description="pixels")
    yaw: float = Field(description="degrees; positive: turned to the image's right")
    pitch: float = Field(description="degrees; positive: looking up")
    roll: float = Field(description="degrees: the eye and mouth lines' angle")
    sharpness: float = Field(description="0-1, from the aligned crop's Laplacian variance")
    brightness: float = Field(description="0-1, the aligned crop's mean luma")
    motion_blur: float = Field(
        alias="motionBlur",
        description="0-1, how much the crop's edges run one way (a face smeared by motion)",
    )
    detector_score: float = Field(alias="detectorScore")
    embedding_norm: float | None = Field(
        alias="embeddingNorm",
        description="the embedding's norm before normalization (quality embeds every face it "
        "grades, /v1/detect's too)",
    )


class DetectResult(WireModel):
    processed: bool = False
    confidence: float = 0.0
    bounding_box: BoundingBox = Field(default_factory=BoundingBox, alias="boundingBox")
    landmarks: list[Landmark] = Field(default_factory=list)
    quality: FaceQuality | None = Field(
        None,
        exclude_if=partial(is_, None),  # without returnQuality: today's answer exactly
        json_schema_extra=SENT_WHEN_ASKED,
    )


class DetectResponse(WireModel):
    seq: int = 0
    faces: list[DetectResult] = Field(default_factory=list)


class FeatureInfoResult(WireModel):
    feature: str = ""
    face_detect: DetectResult = Field(default_factory=DetectResult)


class FeatureResponse(WireModel):
    version: str
    feature: str = ""
    face_detect: DetectResult = Field(default_factory=DetectResult)


class MultiFeatureResponse(WireModel):
    version: str
    feature_info_list: list[FeatureInfoResult] = Field(default_factory=list)


class EmbeddingsInfoResult(WireModel):
    embeddings: list[float] = Field(default_factory=list)
    face_detect: DetectResult = Field(default_factory=DetectResult)


class EmbeddingsResponse(WireModel):
    version: str
    embeddings: list[float] = Field(default_factory=list)
    face_detect: DetectResult = Field(default_factory=DetectResult)


class MultiEmbeddingsResponse(WireModel):
    version: str
    embeddings_info_list: list[EmbeddingsInfoResult] = Field(default_factory=list)


class ScoreResponse(WireModel):
    score: float = 0.0
    face_detects: list[DetectResult] = Field(default_factory=list)


class FeatureScoreResponse(WireModel):
    score: float = 0.0


# --- GET endpoints (not in the reference's bodies; shapes decided in CONTRACT.md) ----------------
class HealthResponse(BaseModel):
    status: Literal["ok", "unavailable"]
    detail: str | None = None
    # Only when the server runs unsafely: "API key checks are off (FACE_API_AUTH=off) ...".
    warnings: list[str] | None = None


class ServerInfo(BaseModel):
    name: str
    version: str
    bentoml: str
    insightface: str
    onnxruntime: str
    providers: list[str]
    device: Literal["cuda", "cpu"]
    # Distributions installed twice over (pip beside insightface's requirements), and the fix.
    package_conflicts: list[str] = []
    repair_command: str | None = None


class ModelNames(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_name: str
    models: list[str]


class ModelFile(BaseModel):
    name: str
    sha256: str


class ModelDetail(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_name: str
    tag: str
    files: list[ModelFile]
    detector: DetectorInfo
    recognizer: RecognizerInfo
    providers: list[str]
    device: Literal["cuda", "cpu"]
    match_threshold: float
    match_threshold_measured: str


class ErrorMessage(BaseModel):
    detail: str
