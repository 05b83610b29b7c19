"""Galleries of enrolled faces in Milvus (embedded Milvus Lite by default, or a Milvus server).

One Milvus collection per gallery (its name hex-encoded, since Milvus names allow only letters,
digits and ``_``), each face a row: ``face_id``, ``subject``, ``subject_key`` (the subject's UTF-8
in hex), ``metadata`` (JSON) and the unit embedding, searched by cosine (the same scale as
``/v1/score``). A registry collection records each gallery's model pack and embedding size, so
features of another pack are refused, never mixed.

No client text is ever spliced into a filter expression: pymilvus quotes string ids without
escaping them (a face id of ``x'] or face_id not in ['`` deleted a whole gallery), and neither
Milvus Lite 2.5 nor a 2.3 server takes ``filter_params``. A subject is found by its hex key, face
ids have one shape (32 hex digits) checked before any call, gallery names only reach Milvus
hex-encoded or as checked ids. Galleries made before ``subject_key`` existed are still served:
their subjects are found by reading the subject column (``_subject_filter``).

The calls block (gRPC); the service runs them off its event loop. Milvus Lite is one process's
file: the store must live in exactly one process.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from face_api.galleries import rules
from face_api.ops.errors import ApiError
from face_api.ops.limits import SUBJECT_MAX_CHARS
from face_api.ops.settings import GALLERY_METADATA_MAX_BYTES, GalleryConsistency

log = logging.getLogger("face_api.galleries")

REGISTRY = "face_api_galleries"
_COLLECTION_PREFIX = "gallery_"
_QUERY_PAGE = 16384  # Milvus's largest query window
# How fresh a read on a Milvus server is (Milvus Lite always sees every write). The server's own
# default, "Bounded", let a face enrolled here go unfound by the next search, and a deleted one be
# counted. "Session" sees every insert made through this store (one per server: every enroll of
# this deployment) and cost a 10k-face search 6 ms here; "Strong" also sees other clients' writes
# at once (several deployments on one cluster) but waited 200-400 ms a read. A delete gives the
# client no timestamp to wait for (Milvus 2.3), so the read after one is always Strong.
DEFAULT_CONSISTENCY: GalleryConsistency = "Session"
_NOT_LOADED = 101  # Milvus's ErrCollectionNotLoaded
SUBJECT_KEY = "subject_key"


@dataclass(frozen=True)
class Match:
    face_id: str
    subject: str
    metadata: dict[str, Any] | None
    score: float


@dataclass(frozen=True)
class Face:
    face_id: str
    subject: str
    metadata: dict[str, Any] | None


@dataclass(frozen=True)
class GalleryInfo:
    name: str
    pack: str
    dimension: int
    faces: int


class GalleryStore:
    """Galleries for one model pack (``pack``, embeddings of ``dimension`` floats)."""

    def __init__(
        self,
        uri: str,
        pack: str,
        dimension: int,
        token: str | None = None,
        *,
        connect_timeout_s: float = 60.0,
        metadata_max_bytes: int = GALLERY_METADATA_MAX_BYTES,
        consistency: GalleryConsistency = DEFAULT_CONSISTENCY,
    ) -> None:
        self.pack = pack
        self.dimension = dimension
        self.metadata_max_bytes = metadata_max_bytes
        self.consistency = consistency
        # Collections deleted from since their last read: that read is Strong (see above).
        self._deleted_from: set[str] = set()
        self.client = _connect(uri, token, connect_timeout_s, prepare=self._ensure_registry)
        # Galleries already checked and loaded by this store: a check and a load cost a round
        # trip each (about 150 ms on Milvus Lite), far more than a search.
        self._opened: set[str] = set()

    # -- galleries -------------------------------------------------------------------------
    def galleries(self) -> list[GalleryInfo]:
        rows = self._read(
            self.client.query,
            REGISTRY,
            filter='name != ""',
            output_fields=["name", "pack", "dimension"],
            limit=_QUERY_PAGE,
        )
        return sorted(
            (
                GalleryInfo(r["name"], r["pack"], int(r["dimension"]), self._count(r["name"]))
                for r in rows
            ),
            key=lambda g: g.name,
        )

    def gallery(self, name: str) -> GalleryInfo:
        registered = self._registered(name)
        return GalleryInfo(
            name, registered["pack"], int(registered["dimension"]), self._count(name)
        )

    def delete_gallery(self, name: str) -> None:
        self._registered(name)
        self._opened.discard(name)
        self.client.drop_collection(_collection(name))
        self._delete(REGISTRY, ids=[name])

    # -- faces -----------------------------------------------------------------------------
    def enroll(
        self,
        gallery: str,
        subject: str,
        features: np.ndarray,
        metadata: dict[str, Any] | None = None,
    ) -> list[str]:
        """Adds one face per row of ``features`` (unit embeddings); returns their new ids.

        The gallery is made on its first enrollment, for this store's pack.
        """
        _check(rules.check_subject, "subject", subject)
        _check(lambda m: rules.check_metadata(m, self.metadata_max_bytes), "metadata", metadata)
        vectors = self._vectors(features)
        self._open_or_create(gallery)
        ids = [uuid.uuid4().hex for _ in vectors]
        rows = [
            {
                "face_id": i,
                "subject": subject,
                SUBJECT_KEY: _subject_key(subject),
                "metadata": metadata or {},
                "vector": v.tolist(),
            }
            for i, v in zip(ids, vectors, strict=True)
        ]
        self.client.insert(_collection(gallery), rows)
        return ids

    def search(
        self, gallery: str, features: np.ndarray, limit: int, threshold: float | None = None
    ) -> list[list[Match]]:
        """The best ``limit`` faces for each row of ``features``, best first, over ``threshold``."""
        vectors = self._vectors(features)
        self._open(gallery)
        hits = self._read(
            self.client.search,
            _collection(gallery),
            data=[v.tolist() for v in vectors],
            limit=limit,
            output_fields=["subject", "metadata"],
            search_params={"metric_type": "COSINE"},
        )
        return [
            [
                Match(_hit_id(h), h["entity"]["subject"], _metadata(h["entity"]), h["distance"])
                for h in per_probe
                if threshold is None or h["distance"] >= threshold
            ]
            for per_probe in hits
        ]

    def verify(self, gallery: str, subject: str, feature: np.ndarray) -> Match:
        """The subject's face closest to ``feature``."""
        vector = self._vectors(feature.reshape(1, -1))[0]
        self._open(gallery)
        where = self._subject_filter(gallery, subject)
        hits = (
            where
            and self._read(
                self.client.search,
                _collection(gallery),
                data=[vector.tolist()],
                limit=1,
                filter=where,
                output_fields=["subject", "metadata"],
                search_params={"metric_type": "COSINE"},
            )[0]
        )
        if not hits:
            raise ApiError.not_found(f"subject {subject!r} is not in gallery {gallery!r}")
        best = hits[0]
        return Match(
            _hit_id(best), best["entity"]["subject"], _metadata(best["entity"]), best["distance"]
        )

    def subjects(self, gallery: str, offset: int, limit: int) -> tuple[list[tuple[str, int]], int]:
        """A page of (subject, faces) in name order, and the number of subjects."""
        self._open(gallery)
        counts: dict[str, int] = {}
        for row in self._all(gallery, ["subject"]):
            counts[row["subject"]] = counts.get(row["subject"], 0) + 1
        names = sorted(counts)
        return [(s, counts[s]) for s in names[offset : offset + limit]], len(names)

    def faces(
        self, gallery: str, offset: int, limit: int, subject: str | None = None
    ) -> tuple[list[Face], int]:
        """A page of faces (by subject, then id), and how many there are."""
        self._open(gallery)
        where = "" if subject is None else self._subject_filter(gallery, subject)
        rows = [] if where is None else self._all(gallery, ["subject", "metadata"], where)
        if subject is not None and not rows:
            raise ApiError.not_found(f"subject {subject!r} is not in gallery {gallery!r}")
        rows.sort(key=lambda r: (r["subject"], r["face_id"]))
        page = [
            Face(r["face_id"], r["subject"], _metadata(r)) for r in rows[offset : offset + limit]
        ]
        return page, len(rows)

    def delete_face(self, gallery: str, face_id: str) -> None:
        _check(rules.check_face_id, "face_id", face_id)  # pymilvus quotes ids unescaped
        self._open(gallery)
        found = self._read(
            self.client.get, _collection(gallery), ids=[face_id], output_fields=["face_id"]
        )
        if not found:
            raise ApiError.not_found(f"face {face_id!r} is not in gallery {gallery!r}")
        self._delete(_collection(gallery), ids=[face_id])

    def delete_subject(self, gallery: str, subject: str) -> int:
        """Deletes every face of ``subject``; returns how many there were."""
        _, count = self.faces(gallery, 0, 0, subject)  # 404 when it has none
        where = self._subject_filter(gallery, subject)
        if where is not None:
            self._delete(_collection(gallery), filter=where)
        return count

    # -- internals -------------------------------------------------------------------------
    def _subject_filter(self, gallery: str, subject: str) -> str | None:
        """A filter expression for ``subject``'s faces in ``gallery`` made only of hex digits the
        store computed: its key, or (a gallery made before keys) its faces' ids; None when a
        gallery without keys holds no face of it."""
        key = _subject_key(subject)
        fields = self.client.describe_collection(_collection(gallery))["fields"]
        if any(field["name"] == SUBJECT_KEY for field in fields):
            return f'{SUBJECT_KEY} == "{key}"'
        rows = self._all(gallery, ["subject"])
        ids = [_checked_id(r["face_id"]) for r in rows if r["subject"] == subject]
        return f"face_id in [{', '.join(ids)}]" if ids else None

    def _ensure_registry(self, client: Any) -> None:
        from pymilvus import DataType

        if client.has_collection(REGISTRY):
            client.load_collection(REGISTRY)
            return
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("name", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("pack", DataType.VARCHAR, max_length=256)
        schema.add_field("dimension", DataType.INT64)
        schema.add_field("unused", DataType.FLOAT_VECTOR, dim=2)  # Milvus needs one vector
        index = client.prepare_index_params()
        index.add_index("unused", metric_type="L2", index_type="FLAT")
        client.create_collection(
            REGISTRY, schema=schema, index_params=index, consistency_level=self.consistency
        )

    def _registered(self, name: str) -> dict[str, Any]:
        _check(rules.check_gallery, "gallery", name)  # it is an id in the registry's queries
        found = self._read(
            self.client.get, REGISTRY, ids=[name], output_fields=["pack", "dimension"]
        )
        if not found:
            raise ApiError.not_found(f"gallery {name!r} does not exist")
        return found[0]

    def _open(self, name: str) -> None:
        """The gallery must exist, be of this store's pack, and be loaded for search."""
        if name in self._opened:
            return
        registered = self._registered(name)
        if registered["pack"] != self.pack or int(registered["dimension"]) != self.dimension:
            raise ApiError.invalid(
                "gallery",
                f"gallery {name!r} holds features of model pack {registered['pack']!r} "
                f"({registered['dimension']}-d); this server runs {self.pack!r} "
                f"({self.dimension}-d): features of different models are never mixed",
            )
        self.client.load_collection(_collection(name))
        self._opened.add(name)

    def _open_or_create(self, name: str) -> None:
        from pymilvus import DataType

        try:
            self._open(name)
            return
        except ApiError as error:
            if error.status != 404:
                raise
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("face_id", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("subject", DataType.VARCHAR, max_length=SUBJECT_MAX_CHARS * 4)
        schema.add_field(SUBJECT_KEY, DataType.VARCHAR, max_length=SUBJECT_MAX_CHARS * 8)
        schema.add_field("metadata", DataType.JSON)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dimension)
        index = self.client.prepare_index_params()
        index.add_index("vector", metric_type="COSINE", index_type="FLAT")
        self.client.create_collection(
            _collection(name), schema=schema, index_params=index, consistency_level=self.consistency
        )
        self.client.upsert(
            REGISTRY,
            [{"name": name, "pack": self.pack, "dimension": self.dimension, "unused": [0.0, 0.0]}],
        )

    def _vectors(self, features: np.ndarray) -> np.ndarray:
        vectors = np.asarray(features, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dimension:
            got = vectors.shape[-1] if vectors.ndim else 0
            raise ApiError.invalid(
                "feature",
                f"expected {self.dimension}-d features of model pack {self.pack!r}, got {got}-d",
                kind="value_error.feature",
            )
        if not np.isfinite(vectors).all() or (np.linalg.norm(vectors, axis=1) == 0).any():
            raise ApiError.invalid(
                "feature", "features must be finite and non-zero", kind="value_error.feature"
            )
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def _count(self, gallery: str) -> int:
        rows = self._read(
            self.client.query, _collection(gallery), filter="", output_fields=["count(*)"]
        )
        return int(rows[0]["count(*)"])

    def _all(self, gallery: str, fields: list[str], where: str = "") -> list[dict[str, Any]]:
        return self._read(self._query_all, _collection(gallery), filter=where, fields=fields)

    def _query_all(
        self, collection: str, filter: str, fields: list[str], consistency_level: str
    ) -> list[dict[str, Any]]:
        iterator = self.client.query_iterator(
            collection,
            batch_size=_QUERY_PAGE // 4,
            filter=filter,
            output_fields=["face_id", *fields],
            consistency_level=consistency_level,
        )
        rows: list[dict[str, Any]] = []
        try:
            while batch := iterator.next():
                rows.extend(batch)
        finally:
            iterator.close()
        return rows

    def _delete(self, collection: str, **which: Any) -> None:
        self.client.delete(collection, **which)
        self._deleted_from.add(collection)

    def _read(self, call: Callable[..., Any], collection: str, **kwargs: Any) -> Any:
        """``call(collection, ...)`` at the store's consistency level (Strong after a delete).

        A Milvus server that restarted serves a collection again only once it is loaded again
        (it reloads on its own, later): such a collection is loaded here and read once more.
        """
        from pymilvus import MilvusException

        level = "Strong" if collection in self._deleted_from else self.consistency
        try:
            found = call(collection, consistency_level=level, **kwargs)
        except MilvusException as exc:
            if exc.code != _NOT_LOADED and "not loaded" not in str(exc.message):
                raise
            log.info("collection %s not loaded on the server (restarted?); loading it", collection)
            self.client.load_collection(collection)
            found = call(collection, consistency_level=level, **kwargs)
        self._deleted_from.discard(collection)
        return found


def _connect(
    uri: str,
    token: str | None,
    timeout_s: float,
    prepare: Callable[[Any], None] = lambda client: client.list_collections(),
) -> Any:
    """A client whose server answers and has done ``prepare`` (the store's first work), waiting
    up to ``timeout_s`` for the server to come up.

    An embedded Milvus Lite starts its server process and gives it 0.5 s before the client
    connects; on a busy machine the server is not listening yet (1 fresh start in 9 failed) and
    the client gives up after its own 10 s; or it listens while its engine is still starting (1
    in 20: the first create_collection failed). A Milvus server may be starting too. So these
    failures are retried until the deadline; any other error is raised at once.
    """
    from pymilvus import MilvusClient, MilvusException

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client = MilvusClient(uri=uri, token=token or "")
            prepare(client)
            return client
        except MilvusException as exc:
            if not _is_starting(exc) or time.monotonic() >= deadline:
                raise
            log.info("gallery store not ready yet (%s); retrying", exc.message)
            time.sleep(0.25)


def _is_starting(exc: Any) -> bool:
    """Not listening yet, or listening while the engine initialises (Milvus Lite 2.5 answered
    ``Assert "init_flag_ == true" => Mmap manager has not been init.``)."""
    return is_connection_failure(exc) or "has not been init" in str(exc.message)


def is_connection_failure(exc: Any) -> bool:
    import grpc
    from pymilvus.client.types import Status

    return exc.code in (Status.CONNECT_FAILED, grpc.StatusCode.UNAVAILABLE)


def _collection(gallery: str) -> str:
    return _COLLECTION_PREFIX + gallery.encode("utf-8").hex()


def _check(rule: Callable[[Any], Any], field: str, value: Any) -> None:
    try:
        rule(value)
    except ValueError as exc:
        raise ApiError.invalid(field, str(exc)) from None


def _checked_id(face_id: str) -> str:
    """A face id as a quoted literal, after checking it is one (32 hex digits)."""
    _check(rules.check_face_id, "face_id", face_id)
    return f'"{face_id}"'


def _subject_key(subject: str) -> str:
    """A subject as a filter may name it: its UTF-8 in hex, whatever characters it holds."""
    try:
        return subject.encode("utf-8").hex()
    except UnicodeEncodeError:  # a lone surrogate: never stored
        raise ApiError.invalid("subject", "subject must be valid Unicode") from None


def _hit_id(hit: Any) -> str:
    """A search hit's primary key (pymilvus 2.x, as pinned, calls it ``id``)."""
    return str(hit["id"])


def _metadata(entity: dict[str, Any]) -> dict[str, Any] | None:
    value = entity.get("metadata")
    return value or None
