"""Request and response bodies of ``/v1/galleries/...``, in the reference's style (camelCase keys,
``face_detect`` as in the other responses, features as base64 little-endian float32)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StrictBool, field_validator

from face_api.galleries.rules import Subject, check_metadata
from face_api.http.schemas import (
    EXACTLY_ONE_OF,
    IMAGE_DOC,
    DetectResult,
    QualityReason,
    RequestInt,
    ReturnQuality,
    WireModel,
)
from face_api.ops.limits import (
    FACES_MAX_RESULTS,
    MAX_RESULTS,
    METADATA_MAX_DEPTH,
    SEARCH_MAX_MATCHES,
    SEARCH_MAX_RESULTS,
)

IMAGE_OR_FEATURE = {
    "image": {
        "type": "string",
        "title": "Image",
        "description": "base64 encoded image; give either image or feature",
        **IMAGE_DOC,
    },
    "feature": {
        "type": "string",
        "title": "Feature",
        "description": "a feature as /v1/feature returns it (base64 of little-endian float32); "
        "or give image",
        "minLength": 1,
        "contentEncoding": "base64",
    },
}


def _image_or_feature(schema: dict[str, Any]) -> None:
    """The document states the rule the server keeps: exactly one of ``image`` and ``feature``,
    a string (null is refused, as an absent key is not). The published document splits such a
    body into its two shapes (``face_api/http/openapi.py``)."""
    schema["properties"].update(IMAGE_OR_FEATURE)
    schema[EXACTLY_ONE_OF] = list(IMAGE_OR_FEATURE)


class ProbeBody(WireModel):
    """A body that carries an image or a feature."""

    model_config = {"json_schema_extra": _image_or_feature}
    image: str | None = None
    feature: str | None = None

    @field_validator("image", "feature", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:  # only a sent null reaches here: an absent key keeps its default
            raise ValueError("give a string, or leave the key out")
        return value


QualityFilterName = Literal["NONE", "LOW", "MEDIUM", "HIGH", "AUTO"]


class EnrollReqBody(ProbeBody):
    subject: Subject
    metadata: Annotated[dict[str, Any] | None, AfterValidator(check_metadata)] = Field(
        None,
        description=f"any JSON object (at most {METADATA_MAX_DEPTH} levels deep, numbers finite), "
        "returned in matches",
    )
    all_faces: StrictBool = Field(
        False,
        alias="allFaces",
        description="enroll every face (up to maxResults, largest first) that clears "
        "qualityFilter, not the largest; the others are listed in unindexedFaces",
    )
    max_results: RequestInt = Field(FACES_MAX_RESULTS, alias="maxResults", ge=1, le=MAX_RESULTS)
    quality_filter: QualityFilterName = Field(
        "AUTO",
        alias="qualityFilter",
        description="the quality bar an image's face must clear to be enrolled: NONE; LOW "
        "(refuses what is hardly a face: too small or too unsure); MEDIUM (refuses any face "
        "graded low); HIGH (only faces graded high); AUTO, the default, is MEDIUM",
    )


class EnrolledFace(WireModel):
    face_id: str = Field(alias="faceId")
    face_detect: DetectResult | None = None


class UnindexedFace(WireModel):
    """A face of an allFaces enrollment that was not enrolled, as AWS IndexFaces'
    UnindexedFaces."""

    position: int = Field(description="the face's place in the image, 1 for the largest")
    reasons: list[QualityReason] = Field(
        description="why qualityFilter refused it, the worst first"
    )
    face_detect: DetectResult = Field(
        description="its box, landmarks and detector score, and its quality (grade, every "
        "reason it is below high, the measures)"
    )


class EnrollResponse(WireModel):
    gallery: str
    subject: str
    faces: list[EnrolledFace] = Field(description="the faces enrolled, largest first")
    unindexed_faces: list[UnindexedFace] = Field(
        default_factory=list,
        alias="unindexedFaces",
        description="with allFaces, the faces below qualityFilter, not enrolled (empty "
        "otherwise: a single face below it is a 422)",
    )


class SearchReqBody(ProbeBody):
    max_results: RequestInt = Field(
        SEARCH_MAX_RESULTS,
        alias="maxResults",
        ge=1,
        le=MAX_RESULTS,
        description=f"matches per probe face; an answer holds at most {SEARCH_MAX_MATCHES} "
        "(maxResults x maxFaces with allFaces)",
    )
    threshold: float | None = Field(
        None, ge=-1.0, le=1.0, description="only matches with a cosine score at least this"
    )
    all_faces: StrictBool = Field(
        False, alias="allFaces", description="search with every face of the image, not the largest"
    )
    max_faces: RequestInt = Field(
        FACES_MAX_RESULTS,
        alias="maxFaces",
        ge=1,
        le=MAX_RESULTS,
        description="probe faces with allFaces",
    )
    return_quality: StrictBool = ReturnQuality


class MatchResult(WireModel):
    subject: str
    face_id: str = Field(alias="faceId")
    metadata: dict[str, Any] | None = None
    score: float


class SearchResult(WireModel):
    face_detect: DetectResult | None = None
    matches: list[MatchResult]
    threshold: float = Field(
        description="the score a match needs: the request's threshold, else the model pack's"
    )
    match: bool = Field(
        description="whether the best match reaches the threshold: false for a stranger (the "
        "matches are then only the closest faces) and for an empty gallery"
    )


class SearchResponse(WireModel):
    gallery: str
    results: list[SearchResult]


class VerifyReqBody(ProbeBody):
    subject: Subject


class VerifyResponse(WireModel):
    subject: str
    face_id: str = Field(alias="faceId", description="the subject's closest face")
    score: float
    threshold: float = Field(description="the model pack's recommended match threshold")
    match: bool = Field(description="score >= threshold")
    face_detect: DetectResult | None = None


class GalleryEntry(WireModel):
    name: str
    model_name: str = Field(alias="modelName")
    embedding_size: int = Field(alias="embeddingSize")
    faces: int


class GalleryList(WireModel):
    galleries: list[GalleryEntry]


class SubjectEntry(WireModel):
    subject: str
    faces: int


class SubjectPage(WireModel):
    subjects: list[SubjectEntry]
    total: int
    offset: int
    limit: int


class FaceEntry(WireModel):
    face_id: str = Field(alias="faceId")
    subject: str
    metadata: dict[str, Any] | None = None


class FacePage(WireModel):
    faces: list[FaceEntry]
    total: int
    offset: int
    limit: int


class Deleted(WireModel):
    deleted: int = Field(description="how many faces were deleted")
