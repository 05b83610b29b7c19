"""The gallery calls (``calls.py``) as the API workers make them, with this server's pack.

Where they run depends on the database. Milvus Lite is one process's file: the calls go to the
``GalleryStoreService`` that owns it (the handle of ``bentoml.depends``). A Milvus server is safe
to share between processes, as replicas share it: each API worker runs the calls itself
(``InProcessCalls``), on threads of its own, and a search skips a hop (2-3 ms and a BentoML
request's CPU, measured in benchmarks/README.md).

Every call files its features under the served pack's name and embedding size, so a gallery never
mixes features of two models. A call is one ``round_trip`` (``face_api/http/round_trip.py``), as
the runner's are: it carries the request's context, its ``Reply`` is unwrapped (the store's
``ApiError`` raised again, a service that does not answer a 503), and its time goes to the
request's ``Server-Timing``: ``gallery`` (the calls' own, their Milvus calls) and ``gallery-hop``
(the round trip less that). The answers are the store's own types (``store.py``), as BentoML's
client validates them.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from face_api.galleries.calls import GALLERY_THREADS, GalleryCalls
from face_api.galleries.rules import check_metadata
from face_api.galleries.store import FaceList, GalleryInfo, Match, SubjectList
from face_api.http.info import ServedModel
from face_api.http.round_trip import round_trip
from face_api.ops.errors import ApiError, Reply

T = TypeVar("T")


class InProcessCalls:
    """``GalleryCalls`` run in this process, called as the gallery service's handle is (a
    coroutine per method), each on a thread of its own pool: a write waits for its visibility,
    and the event loop never waits."""

    def __init__(self, calls: GalleryCalls, threads: int = GALLERY_THREADS) -> None:
        self._calls = calls
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="gallery")

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Reply[Any]]]:
        method = getattr(self._calls, name)

        async def call(**arguments: Any) -> Reply[Any]:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, functools.partial(method, **arguments))

        call.__name__ = name
        return call


class GalleryStoreClient:
    # A read sent again when a pooled connection closed as it was written; writes never are (an
    # enroll sent twice would enroll twice).
    READ_RETRIES = 1

    def __init__(self, calls: Any, served: ServedModel, metadata_max_bytes: int) -> None:
        # The gallery service's ``bentoml.depends`` handle's ``to_async``, or ``InProcessCalls``.
        self.calls = calls
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
        return await self._write(
            self.calls.enroll,
            gallery=gallery,
            subject=subject,
            features=features.astype(np.float32),
            metadata=metadata,
        )

    async def search(
        self, gallery: str, features: np.ndarray, limit: int, threshold: float | None
    ) -> list[list[Match]]:
        """Per row of ``features``, its best matches, best first."""
        return await self._read(
            self.calls.search,
            gallery=gallery,
            features=features.astype(np.float32),
            limit=limit,
            threshold=threshold,
        )

    async def verify(self, gallery: str, subject: str, feature: np.ndarray) -> Match:
        """The subject's face closest to ``feature`` (1, D)."""
        return await self._read(
            self.calls.verify,
            gallery=gallery,
            subject=subject,
            features=feature.astype(np.float32),
        )

    async def galleries(self) -> list[GalleryInfo]:
        return await self._read(self.calls.galleries)

    async def subjects(self, gallery: str, offset: int, limit: int) -> SubjectList:
        return await self._read(self.calls.subjects, gallery=gallery, offset=offset, limit=limit)

    async def faces(self, gallery: str, offset: int, limit: int, subject: str | None) -> FaceList:
        return await self._read(
            self.calls.faces, gallery=gallery, offset=offset, limit=limit, subject=subject
        )

    async def delete_face(self, gallery: str, face_id: str) -> int:
        return await self._write(self.calls.delete_face, gallery=gallery, face_id=face_id)

    async def delete_subject(self, gallery: str, subject: str) -> int:
        return await self._write(self.calls.delete_subject, gallery=gallery, subject=subject)

    async def delete_gallery(self, gallery: str) -> int:
        return await self._write(self.calls.delete_gallery, gallery=gallery)

    async def _read(self, call: Callable[..., Awaitable[Reply[T]]], **arguments: Any) -> T:
        return await self._round_trip(call, self.READ_RETRIES, **arguments)

    async def _write(self, call: Callable[..., Awaitable[Reply[T]]], **arguments: Any) -> T:
        return await self._round_trip(call, 0, **arguments)

    async def _round_trip(
        self, call: Callable[..., Awaitable[Reply[T]]], retries: int, **arguments: Any
    ) -> T:
        """``call``'s result for this server's pack, or its ``ApiError`` raised again."""
        pack, dimension = await self.served.gallery_key()
        return await round_trip(
            call,
            retries=retries,
            unavailable="gallery store",
            hop="gallery-hop",
            service="gallery",
            pack=pack,
            dimension=dimension,
            **arguments,
        )
