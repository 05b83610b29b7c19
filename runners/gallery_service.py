"""The BentoML service that owns the galleries: one worker, since an embedded Milvus Lite database
is one process's file (the API may run several workers; they all reach the store through here).

On a Milvus server the API workers run the gallery calls themselves (``store_client.py``): the
store is safe to share between processes (what it keeps between calls, what a search needs of its
gallery, no write of another process can make wrong, which is also what lets several servers,
replicas, share one Milvus), so a search skips a hop. This service then only says, once, what the
galleries are.

It says what the galleries are (``GalleryStore.survey``: an index other than the setting's, a Lite
gallery past the size Lite is fit for): on a Milvus server at start, in the background (a database
still starting holds nothing up, and the API workers serve meanwhile); Milvus Lite, which starts
on the first gallery call, before that call answers.

Its methods are ``GalleryCalls``'s (``face_api/galleries/calls.py``), served as BentoML APIs.
"""

from __future__ import annotations

import contextlib
import logging
import threading

import bentoml

from face_api.galleries import folder
from face_api.galleries.calls import GALLERY_THREADS, GalleryCalls
from face_api.galleries.store import GalleryStore
from face_api.ops.errors import ApiError
from face_api.ops.settings import get_settings
from face_api.ops.startup import (
    INTERNAL_CONNECTION,
    freeze_heap,
    refuse_to_start,
    start_worker,
)

log = logging.getLogger("face_api.galleries")
settings = get_settings()


@bentoml.service(
    name="GalleryStoreService",
    workers=1,
    threads=GALLERY_THREADS,
    traffic={"timeout": settings.request_timeout_s},
    runner_connection=INTERNAL_CONNECTION,
)
class GalleryStoreService(GalleryCalls):
    def __init__(self) -> None:
        start_worker()
        super().__init__(settings)
        try:  # a token file that cannot be read stops the server now, not at a gallery call
            settings.load_gallery_token()
        except (OSError, ValueError) as exc:
            refuse_to_start(f"FACE_GALLERY_TOKEN_FILE: {exc}")
        if not settings.gallery_uri:  # embedded Milvus Lite: this folder is ours alone
            try:
                self._folder_claim = folder.claim(settings.gallery_dir)
            except folder.GalleryFolderInUseError as exc:
                refuse_to_start(str(exc))
        if settings.gallery_uri:
            threading.Thread(target=_survey, name="gallery-survey", daemon=True).start()
        freeze_heap()

    def _opened(self, store: GalleryStore) -> None:
        _survey(store)  # Milvus Lite (a server's calls are the API workers'): before it answers

    enroll = bentoml.api(GalleryCalls.enroll)
    search = bentoml.api(GalleryCalls.search)
    verify = bentoml.api(GalleryCalls.verify)
    galleries = bentoml.api(GalleryCalls.galleries)
    subjects = bentoml.api(GalleryCalls.subjects)
    faces = bentoml.api(GalleryCalls.faces)
    delete_face = bentoml.api(GalleryCalls.delete_face)
    delete_subject = bentoml.api(GalleryCalls.delete_subject)
    delete_gallery = bentoml.api(GalleryCalls.delete_gallery)


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
