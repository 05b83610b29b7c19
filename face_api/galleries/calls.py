"""Every gallery call, on this process's stores: what ``GalleryStoreService``
(``runners/gallery_service.py``) serves as its BentoML methods, and what an API worker runs itself
when the galleries are on a Milvus server (``store_client.py``).

A store is opened per model pack and embedding size on its first call, so a server that never
touches galleries never opens the database. Every call answers a ``Reply``
(``face_api/ops/errors.py``): its result, or the store's ``ApiError`` (an unknown gallery, a
feature of another pack, the database not answering: a 503). It is served under the request's
context (its id in the log lines, its deadline), which crosses as the ``request`` argument.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import numpy as np
from bentoml.validators import DType

from face_api.galleries.store import (
    FaceList,
    GalleryInfo,
    GalleryStore,
    Match,
    SubjectCount,
    SubjectList,
    is_connection_failure,
)
from face_api.ops.context import CallContext, RequestContext, serving
from face_api.ops.errors import ApiError, Reply, replying
from face_api.ops.settings import Settings
from face_api.ops.startup import freeze_heap

log = logging.getLogger("face_api.galleries")
# Calls at once: a write waits for its visibility (up to a time tick of a Milvus server, 200 ms),
# and the store is safe to share (concurrent enrolls, drops and reads, from here or elsewhere).
GALLERY_THREADS = 16
Features = Annotated[np.ndarray, DType("float32")]
T = TypeVar("T")


class GalleryCalls:
    """The gallery calls of one process, each taking the served pack's name and embedding size
    (a gallery never mixes two models' features) and the request's context."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stores: dict[tuple[str, int], GalleryStore] = {}
        self._opening = threading.Lock()  # one store per pack, whichever thread asks first

    def _opened(self, store: GalleryStore) -> None:
        """Called once a store is opened, before its first call (the gallery service surveys)."""

    def _store(self, pack: str, dimension: int) -> GalleryStore:
        key = (pack, dimension)
        with self._opening:
            if key not in self._stores:
                settings = self.settings
                uri = settings.gallery_store_uri()
                store = GalleryStore(
                    uri,
                    pack,
                    dimension,
                    settings.load_gallery_token(),
                    connect_timeout_s=settings.request_timeout_s,
                    metadata_max_bytes=settings.gallery_metadata_max_bytes,
                    index=settings.gallery_vector_index(),
                )
                log.info("galleries opened (%s)", "Milvus server" if settings.gallery_uri else uri)
                self._opened(store)
                self._stores[key] = store
                freeze_heap()  # the database's client too
            return self._stores[key]

    def _serve(
        self, request: CallContext, pack: str, dimension: int, work: Callable[[GalleryStore], T]
    ) -> Reply[T]:
        """``work`` on the pack's store, as a ``Reply``: served under the request's id and
        deadline, its time the caller's ``gallery`` stage, and whatever the store refuses (its
        opening too) the reply's error. A database that does not answer, or fails in a way the
        store does not know, is a 503 (logged), never a 500."""
        from pymilvus import MilvusException

        with serving(RequestContext.from_wire(request)) as context, replying(context) as reply:
            try:
                reply.result = work(self._store(pack, dimension))
            except ApiError:
                raise
            except MilvusException as exc:
                if is_connection_failure(exc):
                    log.warning("gallery database unreachable: %s", exc.message)
                    raise ApiError.unavailable("the gallery database does not answer") from None
                log.error("gallery database error %s: %s", exc.code, exc.message)
                raise ApiError.unavailable("the gallery database failed the call") from None
            except Exception:
                log.exception("gallery call failed")
                raise ApiError.unavailable("the gallery store failed the call") from None
        return reply

    def enroll(
        self,
        pack: str,
        dimension: int,
        gallery: str,
        subject: str,
        features: Features,
        request: CallContext,
        metadata: dict[str, Any] | None = None,
    ) -> Reply[list[str]]:
        return self._serve(
            request,
            pack,
            dimension,
            lambda store: store.enroll(gallery, subject, features, metadata),
        )

    def search(
        self,
        pack: str,
        dimension: int,
        gallery: str,
        features: Features,
        limit: int,
        request: CallContext,
        threshold: float | None = None,
    ) -> Reply[list[list[Match]]]:
        return self._serve(
            request,
            pack,
            dimension,
            lambda store: store.search(gallery, features, limit, threshold),
        )

    def verify(
        self,
        pack: str,
        dimension: int,
        gallery: str,
        subject: str,
        features: Features,
        request: CallContext,
    ) -> Reply[Match]:
        return self._serve(
            request, pack, dimension, lambda store: store.verify(gallery, subject, features[0])
        )

    def galleries(
        self, pack: str, dimension: int, request: CallContext
    ) -> Reply[list[GalleryInfo]]:
        return self._serve(request, pack, dimension, lambda store: store.galleries())

    def subjects(
        self, pack: str, dimension: int, gallery: str, offset: int, limit: int, request: CallContext
    ) -> Reply[SubjectList]:
        def page(store: GalleryStore) -> SubjectList:
            subjects, total = store.subjects(gallery, offset, limit)
            return SubjectList([SubjectCount(s, faces) for s, faces in subjects], total)

        return self._serve(request, pack, dimension, page)

    def faces(
        self,
        pack: str,
        dimension: int,
        gallery: str,
        offset: int,
        limit: int,
        request: CallContext,
        subject: str | None = None,
    ) -> Reply[FaceList]:
        return self._serve(
            request,
            pack,
            dimension,
            lambda store: FaceList(*store.faces(gallery, offset, limit, subject)),
        )

    def delete_face(
        self, pack: str, dimension: int, gallery: str, face_id: str, request: CallContext
    ) -> Reply[int]:
        return self._serve(
            request, pack, dimension, lambda store: store.delete_face(gallery, face_id)
        )

    def delete_subject(
        self, pack: str, dimension: int, gallery: str, subject: str, request: CallContext
    ) -> Reply[int]:
        return self._serve(
            request, pack, dimension, lambda store: store.delete_subject(gallery, subject)
        )

    def delete_gallery(
        self, pack: str, dimension: int, gallery: str, request: CallContext
    ) -> Reply[int]:
        return self._serve(request, pack, dimension, lambda store: store.delete_gallery(gallery))
