"""The gallery service's methods as the API workers call them, with this server's pack.

Every call files its features under the served pack's name and embedding size, so a gallery never
mixes features of two models; the service's ``Reply`` is unwrapped here (its ``ApiError`` raised
again), and a service that does not answer is a 503. Each call's time goes to the request's
``Server-Timing``: ``gallery`` (the service's own, its Milvus calls) and ``gallery-hop`` (the
round trip to it less that).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from face_api.galleries.rules import check_metadata
from face_api.http.error_responses import BACKEND_ERRORS
from face_api.http.info import ServedModel
from face_api.ops.context import current, since_ms
from face_api.ops.errors import SERVICE_STAGE, ApiError, Reply


class GalleryStoreClient:
    def __init__(self, store: Any, served: ServedModel, metadata_max_bytes: int) -> None:
        self.store = store  # the ``bentoml.depends`` handle of ``GalleryStoreService``
        self.served = served
        self.metadata_max_bytes = metadata_max_bytes

    def check_metadata(self, metadata: dict[str, Any] | None) -> None:
        """422 for metadata the store would refuse, before the request's image is worked on."""
        try:
            check_metadata(metadata, self.metadata_max_bytes)
        except ValueError as exc:
            raise ApiError.refused("metadata", exc) from None

    async def enroll(
        self, gallery: str, subject: str, features: np.ndarray, metadata: dict[str, Any] | None
    ) -> list[str]:
        """The new faces' ids, one per row of ``features``."""
        return await self._round_trip(
            self.store.to_async.enroll,
            gallery=gallery,
            subject=subject,
            features=features.astype(np.float32),
            metadata=metadata,
        )

    async def search(
        self, gallery: str, features: np.ndarray, limit: int, threshold: float | None
    ) -> list[list[dict[str, Any]]]:
        """Per row of ``features``, its best matches (``face_id``, ``subject``, ``metadata``,
        ``score``), best first."""
        return await self._round_trip(
            self.store.to_async.search,
            gallery=gallery,
            features=features.astype(np.float32),
            limit=limit,
            threshold=threshold,
        )

    async def verify(self, gallery: str, subject: str, feature: np.ndarray) -> dict[str, Any]:
        """The subject's face closest to ``feature`` (1, D): ``subject``, ``face_id``, ``score``."""
        return await self._round_trip(
            self.store.to_async.verify,
            gallery=gallery,
            subject=subject,
            features=feature.astype(np.float32),
        )

    async def galleries(self) -> list[dict[str, Any]]:
        return await self._round_trip(self.store.to_async.galleries)

    async def subjects(self, gallery: str, offset: int, limit: int) -> dict[str, Any]:
        return await self._round_trip(
            self.store.to_async.subjects, gallery=gallery, offset=offset, limit=limit
        )

    async def faces(
        self, gallery: str, offset: int, limit: int, subject: str | None
    ) -> dict[str, Any]:
        return await self._round_trip(
            self.store.to_async.faces, gallery=gallery, offset=offset, limit=limit, subject=subject
        )

    async def delete_face(self, gallery: str, face_id: str) -> int:
        return await self._round_trip(
            self.store.to_async.delete_face, gallery=gallery, face_id=face_id
        )

    async def delete_subject(self, gallery: str, subject: str) -> int:
        return await self._round_trip(
            self.store.to_async.delete_subject, gallery=gallery, subject=subject
        )

    async def delete_gallery(self, gallery: str) -> int:
        return await self._round_trip(self.store.to_async.delete_gallery, gallery=gallery)

    async def _round_trip(self, call: Callable[..., Awaitable[Reply]], **arguments: Any) -> Any:
        """``call``'s result for this server's pack, or its ``ApiError`` raised again."""
        pack, dimension = await self.served.gallery_key()
        start = time.perf_counter()
        try:
            reply = await call(pack=pack, dimension=dimension, **arguments)
        except BACKEND_ERRORS as exc:
            message = f"gallery store unavailable ({type(exc).__name__})"
            raise ApiError.unavailable(message) from None
        service = reply.timings.get(SERVICE_STAGE, 0.0)
        context = current()
        context.add("gallery", service)
        context.add("gallery-hop", since_ms(start) - service)
        return reply.unwrap()
