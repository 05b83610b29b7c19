"""``/v1/galleries/...``: enroll, search, verify, list and delete enrolled faces.

FastAPI routes (GET and DELETE are needed, which BentoML's native APIs cannot serve), mounted with
the info app at ``/v1``. Faces are found and embedded by the same pipeline as ``/v1/feature``;
features go to the store through ``store_client.py`` (the ``GalleryStoreService`` with Milvus
Lite; on a Milvus server, the API worker's own calls).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Protocol

import bentoml
import numpy as np
from fastapi import APIRouter, Depends, File, Form, Path, Query, UploadFile
from fastapi.routing import APIRoute
from pydantic import AfterValidator, BeforeValidator
from starlette.convertors import Convertor, register_url_convertor

from face_api.galleries.rules import (
    FACE_ID_DOC,
    GALLERY_DOC,
    Subject,
    check_face_id,
    check_gallery,
    check_metadata,
)
from face_api.galleries.schemas import (
    Deleted,
    EnrolledFace,
    EnrollReqBody,
    EnrollResponse,
    FaceEntry,
    FacePage,
    GalleryEntry,
    GalleryList,
    MatchResult,
    QualityFilterName,
    SearchReqBody,
    SearchResponse,
    SearchResult,
    SubjectEntry,
    SubjectPage,
    UnindexedFace,
    VerifyReqBody,
    VerifyResponse,
)
from face_api.galleries.store_client import GalleryStoreClient
from face_api.http.error_responses import handled
from face_api.http.face_endpoints import FaceEndpoints, detect_results
from face_api.http.info import ServedModel
from face_api.http.schemas import ErrorMessage
from face_api.ops.errors import ApiError
from face_api.ops.limits import (
    FACES_MAX_RESULTS,
    GALLERY_NAME_MAX_CHARS,
    MAX_RESULTS,
    PAGE_DEFAULT,
    PAGE_MAX,
    SEARCH_MAX_MATCHES,
    SEARCH_MAX_RESULTS,
    SUBJECT_MAX_CHARS,
)
from face_api.ops.runner_hop import Analysis, FaceQuery
from face_api.pipeline.features import decode_feature
from face_api.pipeline.images import decode_base64
from face_api.pipeline.quality import QualityFilter, refusals

MESSAGE_FACES = 5  # the refused faces a 422's message names, the largest first
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorMessage, "description": "Missing or unknown x-api-key"},
    404: {"model": ErrorMessage, "description": "Unknown gallery, subject or face"},
    503: {"model": ErrorMessage, "description": "Gallery store or runner unavailable"},
}


class GalleryHost(Protocol):
    """What the routes need from the service instance (``service.FaceAPI``)."""

    faces: FaceEndpoints
    served: ServedModel
    galleries: GalleryStoreClient


async def host() -> GalleryHost:
    # async: FastAPI runs a plain function dependency on a thread of its pool, a hop per request
    return bentoml.get_current_service()


Host = Annotated[GalleryHost, Depends(host)]
router = APIRouter(tags=["Galleries"], responses=ERRORS)

# Identifiers in the path, checked before any work: a bad one is a 422 at ["path", name].
Gallery = Annotated[str, Path(json_schema_extra=GALLERY_DOC), AfterValidator(check_gallery)]
FaceId = Annotated[str, Path(json_schema_extra=FACE_ID_DOC), AfterValidator(check_face_id)]
# Erasure takes any subject up to the length limit, whatever an earlier version enrolled; the
# store never splices it into a query.
AnySubject = {"minLength": 1, "maxLength": SUBJECT_MAX_CHARS, "description": "the subject's name"}
SubjectToErase = Annotated[
    str, Path(min_length=1, max_length=SUBJECT_MAX_CHARS, json_schema_extra=AnySubject)
]


class _AnyText(Convertor[str]):
    """A path parameter of any characters, slashes and line breaks too (Starlette's ``path``
    stops at a line break, its default at a slash): an enrolled name is always erasable."""

    regex = "(?s:.+)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("anytext", _AnyText())


def post_routes() -> list[APIRoute]:
    """The POST routes, paths relative to the mount point (``/v1``)."""
    return [r for r in router.routes if isinstance(r, APIRoute) and "POST" in r.methods]


# -- probes: the faces to store or search with ------------------------------------------------
async def _probes(
    svc: GalleryHost,
    image: bytes | str | None,
    feature: str | None,
    all_faces: bool,
    limit: int,
    quality: bool = False,
) -> tuple[np.ndarray, Analysis | None]:
    """Unit features to store or search with, and the image's analysis (with its faces'
    quality measures if ``quality``; None for a feature)."""
    if (image is None) == (feature is None):
        raise ApiError.invalid("image", "give exactly one of image or feature")
    if feature is not None:
        return decode_feature(feature, "feature")[np.newaxis], None
    data = decode_base64(image, "image") if isinstance(image, str) else image
    query = FaceQuery(max_faces=limit if all_faces else 1, quality=quality)
    (found,) = await svc.faces.runner.analyze([("image", data)], query)
    if not len(found.faces):
        raise ApiError.invalid("image", "no face found in the image", "value_error.no_face")
    return found.embeddings, found


def _detects(svc: GalleryHost, found: Analysis | None) -> list[Any]:
    """Each probe's face_detect: None for a feature."""
    return [None] if found is None else detect_results(found, svc.faces.bars)


def _sift(
    svc: GalleryHost, found: Analysis, bar: QualityFilter
) -> tuple[list[int], list[UnindexedFace]]:
    """The faces that clear ``bar`` (their indices) and those that do not, each with its box,
    quality and the reasons it was refused; a 422 naming the reasons when none clears it."""
    passing: list[int] = []
    refused: list[UnindexedFace] = []
    detects = detect_results(found, svc.faces.bars)
    for i, (face, measures) in enumerate(zip(found.faces, found.quality, strict=True)):
        reasons = refusals(svc.faces.bars.judge(face, measures), bar)
        if reasons:
            kept = [r.value for r in reasons]
            refused.append(UnindexedFace(position=i + 1, reasons=kept, face_detect=detects[i]))
        else:
            passing.append(i)
    if not passing:
        raise ApiError.invalid("image", _refusal(refused, bar), "value_error.quality")
    return passing, refused


def _refusal(refused: list[UnindexedFace], bar: QualityFilter) -> str:
    """Why no face of the image clears ``bar``: each face's reasons, the first few faces'."""
    if len(refused) == 1:
        return f"its face is below the {bar.value} quality bar: {', '.join(refused[0].reasons)}"
    shown = [f"face {f.position} (by size): {', '.join(f.reasons)}" for f in refused]
    if len(shown) > MESSAGE_FACES:
        shown = [*shown[:MESSAGE_FACES], f"and {len(shown) - MESSAGE_FACES} more"]
    listed = "; ".join(shown)
    return f"none of its {len(refused)} faces clears the {bar.value} quality bar: {listed}"


# -- enroll, search, verify -----------------------------------------------------------------------
async def _enroll(svc: GalleryHost, gallery: str, body: EnrollReqBody, image: Any) -> Any:
    svc.galleries.check_metadata(body.metadata)  # before the image's work
    bar = QualityFilter(body.quality_filter)
    judge = bar is not QualityFilter.NONE
    features, found = await _probes(
        svc, image, body.feature, body.all_faces, body.max_results, judge
    )
    unindexed: list[UnindexedFace] = []
    if found is not None and judge:
        # A face below the bar is left out and listed; the image is refused only when none
        # clears it (a single face: the largest, or the only one).
        passing, unindexed = _sift(svc, found, bar)
        features = features[passing]
        found = Analysis(faces=found.faces[passing], height=found.height, width=found.width)
    detects = _detects(svc, found)  # judged, not reported: the enrolled faces' as they were
    ids = await svc.galleries.enroll(gallery, body.subject, features, body.metadata)
    faces = [EnrolledFace(face_id=i, face_detect=d) for i, d in zip(ids, detects, strict=True)]
    return EnrollResponse(
        gallery=gallery, subject=body.subject, faces=faces, unindexed_faces=unindexed
    )


async def _search(svc: GalleryHost, gallery: str, body: SearchReqBody, image: Any) -> Any:
    probes = body.max_faces if body.all_faces and body.feature is None else 1
    if probes * body.max_results > SEARCH_MAX_MATCHES:  # the answer's bound, before any work
        raise ApiError.invalid(
            "maxResults",
            f"a search answers at most {SEARCH_MAX_MATCHES} matches: maxResults "
            f"({body.max_results}) x the probe faces ({probes}: maxFaces with allFaces) is "
            f"{probes * body.max_results}",
            kind="value_error.answer_size",
        )
    features, found = await _probes(
        svc, image, body.feature, body.all_faces, body.max_faces, body.return_quality
    )
    detects = _detects(svc, found)
    found = await svc.galleries.search(gallery, features, body.max_results, body.threshold)
    threshold = body.threshold
    if threshold is None:
        threshold = await svc.served.match_threshold()
    results = [
        SearchResult(
            face_detect=d,
            matches=[
                MatchResult(
                    face_id=m.face_id, subject=m.subject, metadata=m.metadata, score=m.score
                )
                for m in matches
            ],
            threshold=threshold,
            match=bool(matches) and matches[0].score >= threshold,
        )
        for d, matches in zip(detects, found, strict=True)
    ]
    return SearchResponse(gallery=gallery, results=results)


async def _verify(svc: GalleryHost, gallery: str, body: VerifyReqBody, image: Any) -> Any:
    features, found = await _probes(svc, image, body.feature, False, 1)
    detects = _detects(svc, found)
    best = await svc.galleries.verify(gallery, body.subject, features[:1])
    threshold = await svc.served.match_threshold()
    return VerifyResponse(
        subject=best.subject,
        face_id=best.face_id,
        score=best.score,
        threshold=threshold,
        match=best.score >= threshold,
        face_detect=detects[0],
    )


# A name that looks like another one the gallery holds (``lookalikes.py``).
LOOKALIKE = {409: {"model": ErrorMessage, "description": "A different name that looks the same"}}


@router.post("/galleries/{gallery}/faces", response_model=EnrollResponse, responses=LOOKALIKE)
@handled
async def enroll(gallery: Gallery, body: EnrollReqBody, svc: Host) -> Any:
    """Enrolls the image's largest face (or all, with allFaces), or a feature, as `subject`."""
    return await _enroll(svc, gallery, body, body.image)


@router.post("/galleries/{gallery}/search", response_model=SearchResponse)
@handled
async def search(gallery: Gallery, body: SearchReqBody, svc: Host) -> Any:
    """The gallery's closest faces to the image's largest face (or each face), or a feature."""
    return await _search(svc, gallery, body, body.image)


@router.post("/galleries/{gallery}/verify", response_model=VerifyResponse)
@handled
async def verify(gallery: Gallery, body: VerifyReqBody, svc: Host) -> Any:
    """Whether the image's largest face (or a feature) is `subject`: the best score and match."""
    return await _verify(svc, gallery, body, body.image)


# -- multipart twins ------------------------------------------------------------------------------
# A form value is text: "null" (what a client writes for a document's null) or nothing is None.
NULL_FORM_VALUE = BeforeValidator(lambda value: None if value in ("null", "") else value)


def _metadata_form(text: str | None) -> dict[str, Any] | None:
    """The form's metadata text as JSON: an object, or null for none."""
    if text is None or not text.strip():
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        message = "metadata must be a JSON object (as text)"
        raise ApiError.invalid("metadata", message, kind="value_error.json") from None
    try:
        return check_metadata(value)
    except ValueError as exc:
        raise ApiError.refused("metadata", exc) from None


@router.post("/file/galleries/{gallery}/faces", response_model=EnrollResponse, responses=LOOKALIKE)
@handled
async def file_enroll(
    gallery: Gallery,
    svc: Host,
    image: Annotated[UploadFile, File()],
    subject: Annotated[Subject, Form()],
    metadata: Annotated[str | None, Form(description="a JSON object, as text")] = None,
    allFaces: Annotated[bool, Form()] = False,  # noqa: N803 - the wire name
    maxResults: Annotated[int, Form(ge=1, le=MAX_RESULTS)] = FACES_MAX_RESULTS,  # noqa: N803
    qualityFilter: Annotated[QualityFilterName, Form()] = "AUTO",  # noqa: N803
) -> Any:
    """The multipart twin of POST /v1/galleries/{gallery}/faces."""
    body = EnrollReqBody(
        subject=subject,
        metadata=_metadata_form(metadata),
        all_faces=allFaces,
        max_results=maxResults,
        quality_filter=qualityFilter,
    )
    return await _enroll(svc, gallery, body, await image.read())


@router.post("/file/galleries/{gallery}/search", response_model=SearchResponse)
@handled
async def file_search(
    gallery: Gallery,
    svc: Host,
    image: Annotated[UploadFile, File()],
    maxResults: Annotated[int, Form(ge=1, le=MAX_RESULTS)] = SEARCH_MAX_RESULTS,  # noqa: N803
    threshold: Annotated[float | None, Form(ge=-1.0, le=1.0), NULL_FORM_VALUE] = None,
    allFaces: Annotated[bool, Form()] = False,  # noqa: N803
    maxFaces: Annotated[int, Form(ge=1, le=MAX_RESULTS)] = FACES_MAX_RESULTS,  # noqa: N803
    returnQuality: Annotated[bool, Form()] = False,  # noqa: N803
) -> Any:
    """The multipart twin of POST /v1/galleries/{gallery}/search."""
    body = SearchReqBody(
        max_results=maxResults,
        threshold=threshold,
        all_faces=allFaces,
        max_faces=maxFaces,
        return_quality=returnQuality,
    )
    return await _search(svc, gallery, body, await image.read())


@router.post("/file/galleries/{gallery}/verify", response_model=VerifyResponse)
@handled
async def file_verify(
    gallery: Gallery,
    svc: Host,
    image: Annotated[UploadFile, File()],
    subject: Annotated[Subject, Form()],
) -> Any:
    """The multipart twin of POST /v1/galleries/{gallery}/verify."""
    return await _verify(svc, gallery, VerifyReqBody(subject=subject), await image.read())


# -- listing and deleting -------------------------------------------------------------------------
Offset = Annotated[int, Query(ge=0)]
Limit = Annotated[int, Query(ge=1, le=PAGE_MAX)]


@router.get("/galleries", response_model=GalleryList)
@handled
async def list_galleries(svc: Host) -> Any:
    """Every gallery: its model pack, embedding size and number of faces."""
    entries = [
        GalleryEntry(name=g.name, model_name=g.pack, embedding_size=g.dimension, faces=g.faces)
        for g in await svc.galleries.galleries()
    ]
    return GalleryList(galleries=entries)


@router.get("/galleries/{gallery}/subjects", response_model=SubjectPage)
@handled
async def list_subjects(
    gallery: Gallery, svc: Host, offset: Offset = 0, limit: Limit = PAGE_DEFAULT
) -> Any:
    """A page of the gallery's subjects, in name order, with their numbers of faces."""
    page = await svc.galleries.subjects(gallery, offset, limit)
    subjects = [SubjectEntry(subject=s.subject, faces=s.faces) for s in page.subjects]
    return SubjectPage(subjects=subjects, total=page.total, offset=offset, limit=limit)


@router.get("/galleries/{gallery}/faces", response_model=FacePage)
@handled
async def list_faces(
    gallery: Gallery,
    svc: Host,
    subject: Annotated[
        str | None,
        Query(min_length=1, max_length=SUBJECT_MAX_CHARS, json_schema_extra=AnySubject),
    ] = None,
    offset: Offset = 0,
    limit: Limit = PAGE_DEFAULT,
) -> Any:
    """A page of the gallery's faces (optionally one subject's), by subject then face id."""
    page = await svc.galleries.faces(gallery, offset, limit, subject)
    faces = [
        FaceEntry(face_id=f.face_id, subject=f.subject, metadata=f.metadata) for f in page.faces
    ]
    return FacePage(faces=faces, total=page.total, offset=offset, limit=limit)


@router.delete("/galleries/{gallery}/faces/{face_id}", response_model=Deleted)
@handled
async def delete_face(gallery: Gallery, face_id: FaceId, svc: Host) -> Any:
    """Deletes one face."""
    return Deleted(deleted=await svc.galleries.delete_face(gallery, face_id))


@router.delete("/galleries/{gallery}/subjects/{subject:anytext}", response_model=Deleted)
@handled
async def delete_subject(gallery: Gallery, subject: SubjectToErase, svc: Host) -> Any:
    """Deletes every face of a subject (its name percent-encoded in the path: any name ever
    enrolled, '/' as %2F)."""
    return Deleted(deleted=await svc.galleries.delete_subject(gallery, subject))


# Dropping a whole gallery names it twice. A client resolves dot segments before it sends:
# httpx turns ``DELETE .../faces/..`` into ``DELETE /v1/galleries/G`` itself, a request the
# server cannot tell from a drop. Without ``confirm`` it drops nothing.
Confirm = Annotated[
    str,
    Query(
        min_length=1,
        max_length=GALLERY_NAME_MAX_CHARS,
        description="the gallery's name again: a whole gallery is dropped only when the "
        "request names it twice, so no client-resolved path (`.../faces/..`) can drop it",
    ),
]


@router.delete("/galleries/{gallery}", response_model=Deleted)
@handled
async def delete_gallery(gallery: Gallery, confirm: Confirm, svc: Host) -> Any:
    """Deletes a gallery and all its faces (`confirm` must name it again)."""
    if confirm != gallery:
        message = f"confirm must name the gallery being dropped ({gallery!r})"
        item = {"loc": ["query", "confirm"], "msg": message, "type": "value_error.confirm"}
        raise ApiError.invalid_items([item])
    return Deleted(deleted=await svc.galleries.delete_gallery(gallery))
