"""A small typed Python client for the galleries (``/v1/galleries/...``).

BentoML's own client (``bentoml.SyncHTTPClient``) has a method for every native POST of the
face API, but the gallery routes carry the gallery's name in their path, which it cannot fill
in. This client covers every gallery operation and answers the service's own response models::

    from face_api.galleries.client import GalleryClient

    with GalleryClient("http://127.0.0.1:3000", api_key="...") as galleries:
        face = galleries.enroll("staff", "yuke", image=Path("yuke_100.jpg")).faces[0]
        best = galleries.search("staff", image=Path("yuke_200.jpg")).results[0].matches[0]
        galleries.delete_gallery("staff")
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from face_api.galleries.schemas import (
    Deleted,
    EnrollResponse,
    FacePage,
    GalleryList,
    SearchResponse,
    SubjectPage,
    VerifyResponse,
)
from face_api.ops.limits import FACES_MAX_RESULTS, SEARCH_MAX_RESULTS

Model = TypeVar("Model", bound=BaseModel)
Image = Path | bytes


class FaceApiError(Exception):
    """An answer other than 200: its status and the service's ``detail``."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


class GalleryClient:
    def __init__(self, url: str, api_key: str, timeout: float = 60.0) -> None:
        headers = {"x-api-key": api_key}
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)

    def __enter__(self) -> GalleryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- enroll, search, verify: an image (a file or its bytes) or a feature ---------------------
    def enroll(
        self,
        gallery: str,
        subject: str,
        *,
        image: Image | None = None,
        feature: str | None = None,
        metadata: dict[str, Any] | None = None,
        all_faces: bool = False,
        max_results: int = FACES_MAX_RESULTS,
        quality_filter: str = "AUTO",
    ) -> EnrollResponse:
        """Enrolls the image's largest face or a feature; a face below ``quality_filter``
        (NONE, LOW, MEDIUM, HIGH, AUTO) is refused (``FaceApiError``, 422). With ``all_faces``,
        every face that clears it (up to ``max_results``), the others listed in the answer's
        ``unindexed_faces`` with their position, box, quality and reasons; a 422 only when
        none clears it."""
        fields = {
            "subject": subject,
            "allFaces": all_faces,
            "maxResults": max_results,
            "qualityFilter": quality_filter,
        }
        if metadata is not None:
            fields["metadata"] = metadata
        return self._post(EnrollResponse, gallery, "faces", fields, image, feature)

    def search(
        self,
        gallery: str,
        *,
        image: Image | None = None,
        feature: str | None = None,
        max_results: int = SEARCH_MAX_RESULTS,
        threshold: float | None = None,
        all_faces: bool = False,
        max_faces: int = FACES_MAX_RESULTS,
        return_quality: bool = False,
    ) -> SearchResponse:
        """The gallery's closest faces to the image's largest face (each face with
        ``all_faces``), or to a feature, best first; each probe face's quality with
        ``return_quality``."""
        fields: dict[str, Any] = {
            "maxResults": max_results,
            "allFaces": all_faces,
            "maxFaces": max_faces,
            "returnQuality": return_quality,
        }
        if threshold is not None:
            fields["threshold"] = threshold
        return self._post(SearchResponse, gallery, "search", fields, image, feature)

    def verify(
        self, gallery: str, subject: str, *, image: Image | None = None, feature: str | None = None
    ) -> VerifyResponse:
        """Whether the image's largest face (or a feature) is ``subject``."""
        return self._post(VerifyResponse, gallery, "verify", {"subject": subject}, image, feature)

    # -- listing and deleting ----------------------------------------------------------------------
    def galleries(self) -> GalleryList:
        return self._answer(GalleryList, self._http.get("/v1/galleries"))

    def subjects(self, gallery: str, *, offset: int = 0, limit: int = 100) -> SubjectPage:
        params = {"offset": offset, "limit": limit}
        response = self._http.get(f"{_gallery(gallery)}/subjects", params=params)
        return self._answer(SubjectPage, response)

    def faces(
        self, gallery: str, *, subject: str | None = None, offset: int = 0, limit: int = 100
    ) -> FacePage:
        params: dict[str, Any] = {"offset": offset, "limit": limit}
        if subject is not None:
            params["subject"] = subject
        return self._answer(FacePage, self._http.get(f"{_gallery(gallery)}/faces", params=params))

    def delete_face(self, gallery: str, face_id: str) -> int:
        return self._delete(f"{_gallery(gallery)}/faces/{_segment(face_id)}")

    def delete_subject(self, gallery: str, subject: str) -> int:
        return self._delete(f"{_gallery(gallery)}/subjects/{_segment(subject)}")

    def delete_gallery(self, gallery: str) -> int:
        """Deletes the gallery; answers how many faces it held."""
        return self._delete(_gallery(gallery), {"confirm": gallery})

    # -- plumbing -----------------------------------------------------------------------------
    def _post(
        self,
        model: type[Model],
        gallery: str,
        operation: str,
        fields: dict[str, Any],
        image: Image | None,
        feature: str | None,
    ) -> Model:
        if (image is None) == (feature is None):
            raise ValueError("give exactly one of image or feature")
        if feature is not None:  # JSON
            response = self._http.post(
                f"{_gallery(gallery)}/{operation}", json={**fields, "feature": feature}
            )
        else:  # the multipart twin, the image as a file
            data = image.read_bytes() if isinstance(image, Path) else image
            name = image.name if isinstance(image, Path) else "image"
            form = {k: json.dumps(v) if not isinstance(v, str) else v for k, v in fields.items()}
            response = self._http.post(
                f"/v1/file/galleries/{_segment(gallery)}/{operation}",
                data=form,
                files={"image": (name, data)},
            )
        return self._answer(model, response)

    def _delete(self, path: str, params: dict[str, str] | None = None) -> int:
        return self._answer(Deleted, self._http.delete(path, params=params)).deleted

    @staticmethod
    def _answer(model: type[Model], response: httpx.Response) -> Model:
        if response.status_code != 200:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text
            raise FaceApiError(response.status_code, detail)
        return model.model_validate(response.json())


def _gallery(name: str) -> str:
    return f"/v1/galleries/{_segment(name)}"


def _segment(text: str) -> str:
    """``text`` as one path segment: every reserved character escaped, dots too, since HTTP
    clients resolve a ``..`` segment away (DELETE .../subjects/.. would reach the gallery)."""
    return quote(text, safe="").replace(".", "%2E")
