"""The BentoML service that owns the galleries: one worker, since an embedded Milvus Lite database
is one process's file (the API may run several workers; they all reach the store through here).
On a Milvus server one worker is enough too (its calls wait on the database, on several threads)
and more would be as correct: what the store keeps between calls (what a search needs of its
gallery) no write of another process can make wrong, which is also what lets several servers
(replicas) share one Milvus (``store.py``).

It says what the galleries are (``GalleryStore.survey``: an index other than the setting's, a Lite
gallery past the size Lite is fit for) before its first gallery call: on a Milvus server from the
start, in the background (a database still starting holds nothing up); Milvus Lite, which starts
on the first gallery call, then.

Every call answers a ``Reply`` (``face_api/ops/errors.py``): its result, or the store's
``ApiError`` (an unknown gallery, a feature of another pack, the database not answering).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import bentoml
import numpy as np
from bentoml.validators import DType

from face_api.galleries import folder
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
from face_api.ops.settings import get_settings
from face_api.ops.startup import INTERNAL_CONNECTION, refuse_to_start, start_worker

log = logging.getLogger("face_api.galleries")
settings = get_settings()
GALLERY_THREADS = 16
Features = Annotated[np.ndarray, DType("float32")]
T = TypeVar("T")


@bentoml.service(
    name="GalleryStoreService",
    workers=1,
    # Calls at once: a Strong read on a Milvus server waits up to its time tick (200 ms), and
    # the store is safe to share (concurrent enrolls, drops and reads, from here or elsewhere).
    threads=GALLERY_THREADS,
    traffic={"timeout": settings.request_timeout_s},
    runner_connection=INTERNAL_CONNECTION,
)
class GalleryStoreService:
    def __init__(self) -> None:
        start_worker()
        self._stores: dict[tuple[str, int], GalleryStore] = {}
        self._opening = threading.Lock()  # one store per pack, whichever thread asks first
        try:  # a token file that cannot be read stops the server now, not at a gallery call
            settings.load_gallery_token()
        except (OSError, ValueError) as exc:
            refuse_to_start(f"FACE_GALLERY_TOKEN_FILE: {exc}")
        if not settings.gallery_uri:  # embedded Milvus Lite: this folder is ours alone
            try:
                self._folder_claim = folder.claim(settings.gallery_dir)
            except folder.GalleryFolderInUseError as exc:
                refuse_to_start(str(exc))
        self._surveyed = threading.Thread(target=_survey, name="gallery-survey", daemon=True)
        if settings.gallery_uri:
            self._surveyed.start()

    def _store(self, pack: str, dimension: int) -> GalleryStore:
        """Opened on first use, so a server that never touches galleries never starts Milvus."""
        key = (pack, dimension)
        with self._opening:
            if key not in self._stores:
                uri = settings.gallery_store_uri()
                self._stores[key] = GalleryStore(
                    uri,
                    pack,
                    dimension,
                    settings.load_gallery_token(),
                    connect_timeout_s=settings.request_timeout_s,
                    metadata_max_bytes=settings.gallery_metadata_max_bytes,
                    index=settings.gallery_vector_index(),
                )
                log.info("galleries opened (%s)", "Milvus server" if settings.gallery_uri else uri)
                if settings.gallery_uri:
                    self._surveyed.join()  # said before the first call is answered
                else:
                    _survey(self._stores[key])
            return self._stores[key]

    def _serve(
        self, request: CallContext, pack: str, dimension: int, work: Callable[[GalleryStore], T]
    ) -> Reply[T]:
        """``work`` on the pack's store, as a ``Reply``: served under the request's id and
        deadline, its time the caller's ``gallery`` stage, and whatever the store refuses (its
        opening too; a database that does not answer: 503) the reply's error."""
        from pymilvus import MilvusException

        with serving(RequestContext.from_wire(request)) as context, replying(context) as reply:
            try:
                reply.result = work(self._store(pack, dimension))
            except MilvusException as exc:
                if not is_connection_failure(exc):
                    raise
                log.warning("gallery database unreachable: %s", exc.message)
                raise ApiError.unavailable("the gallery database does not answer") from None
        return reply

    @bentoml.api
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

    @bentoml.api
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

    @bentoml.api
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

    @bentoml.api
    def galleries(
        self, pack: str, dimension: int, request: CallContext
    ) -> Reply[list[GalleryInfo]]:
        return self._serve(request, pack, dimension, lambda store: store.galleries())

    @bentoml.api
    def subjects(
        self, pack: str, dimension: int, gallery: str, offset: int, limit: int, request: CallContext
    ) -> Reply[SubjectList]:
        def page(store: GalleryStore) -> SubjectList:
            subjects, total = store.subjects(gallery, offset, limit)
            return SubjectList([SubjectCount(s, faces) for s, faces in subjects], total)

        return self._serve(request, pack, dimension, page)

    @bentoml.api
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

    @bentoml.api
    def delete_face(
        self, pack: str, dimension: int, gallery: str, face_id: str, request: CallContext
    ) -> Reply[int]:
        return self._serve(
            request, pack, dimension, lambda store: store.delete_face(gallery, face_id)
        )

    @bentoml.api
    def delete_subject(
        self, pack: str, dimension: int, gallery: str, subject: str, request: CallContext
    ) -> Reply[int]:
        return self._serve(
            request, pack, dimension, lambda store: store.delete_subject(gallery, subject)
        )

    @bentoml.api
    def delete_gallery(
        self, pack: str, dimension: int, gallery: str, request: CallContext
    ) -> Reply[int]:
        return self._serve(request, pack, dimension, lambda store: store.delete_gallery(gallery))


def _survey(store: GalleryStore | None = None) -> None:
    """Logs what the galleries are (``GalleryStore.survey``); a server that does not answer
    is said, not raised: the gallery calls answer 503 until it does."""
    from pymilvus import MilvusException

    try:
        if store is None:  # a Milvus server: a client of its own, for this only
            store = GalleryStore(
                settings.gallery_store_uri(),
                settings.model,
                0,
                settings.load_gallery_token(),
                connect_timeout_s=settings.request_timeout_s,
                index=settings.gallery_vector_index(),
            )
            with contextlib.closing(store.client):
                store.survey()
        else:
            store.survey()
    except (MilvusException, ApiError) as exc:
        log.warning("could not survey the galleries: %s", exc.message)
