"""Galleries of enrolled faces in Milvus (embedded Milvus Lite by default, or a Milvus server).

One Milvus collection per gallery (its name hex-encoded, since Milvus names allow only letters,
digits and ``_``), each face a row: ``face_id``, ``subject``, ``subject_key`` (the subject's UTF-8
in hex), ``subject_look`` (how it looks, in hex: ``lookalikes.py``; erasure goes by it, and a
gallery keeps one name per look), ``metadata`` (JSON) and the unit embedding, searched by cosine
(the same scale as ``/v1/score``). The collection says which model pack filled it (its
description) and the embedding size (its vector field), so features of another pack are refused,
never mixed.

Several replicas may share one Milvus server, each its own client, and must agree with each
other: a write any replica acknowledged is seen by every later read, through any replica. The
collection is the gallery (made with Milvus's atomic, idempotent create; dropped with its drop),
and the wait that agreement costs is paid by the writes, never by the searches ("commit wait"):

- A write (insert, upsert, delete) does not answer until it is visible: after Milvus acknowledged
  it, the store reads the collection at ``Strong``, which waits until the query node that serves
  each of its shards (its shard delegator) has consumed every write acknowledged before that read
  began (its ``tSafe``, advanced by the server's time tick, ``proxy.timeTickInterval``, 200 ms by
  default). Deletes reach the sealed segments before ``tSafe`` moves past them.
- Reads are ``Bounded``: they do not wait (their guarantee timestamp is ``common.gracefulTime``,
  5 s, in the past, which every delegator's ``tSafe`` is ahead of) and see everything their
  delegator has consumed. A read that begins after a write answered reaches the same delegator,
  which consumed the write before the write answered, so it sees it.

This holds for a collection with one in-memory replica (the store loads its galleries so), served
by the same delegators from the write's wait to the read: always on a standalone server; in a
cluster, a query node lost or rebalanced moves its shards to a new delegator, which within
``gracefulTime`` of the move may not have consumed writes of those last seconds (Bounded waits
for older ones). A gallery loaded with several in-memory replicas by hand is searched ``Strong``
(a write's wait reaches only one replica), and deletes and erasure decide on ``Strong`` reads:
they never miss a face, whatever the load. ``Session`` only promises a client its own writes (a
face deleted through one replica was still matched through another). Measured:
benchmarks/README.md, "Galleries at a million faces". Milvus Lite is one process's database,
which sees every write at once: its writes do not wait.

What a search needs to know of its gallery (its pack, layout, index and read level) is kept
between calls, so a search is one round trip. Kept safely across replicas: the search names a
partition of the collection made for this purpose (``generation_`` + a random id); a gallery
dropped and made again, by any replica, is another collection without it, so the search fails
and the store reads the gallery again, never searching the wrong one. (Milvus Lite has no
partitions, and is one process's: what a store kept is forgotten when any store of the process
makes or drops a collection.)

The vector index of a gallery made on a server is ``GalleryIndex`` (``FACE_GALLERY_INDEX``; HNSW
by default); Milvus Lite has FLAT only. Milvus builds it on each sealed segment in the background
and searches segments not indexed yet exactly: enrolls and searches never wait for it. A gallery
keeps the index it was made with (``survey`` says so at start).

No client text is ever spliced into a filter expression: pymilvus quotes string ids without
escaping them (a face id of ``x'] or face_id not in ['`` deleted a whole gallery), and neither
Milvus Lite 2.5 nor a 2.3 server takes ``filter_params``. A subject is found by its hex key, face
ids have one shape (32 hex digits) checked before any call, gallery names only reach Milvus
hex-encoded. Galleries made by earlier versions (no ``subject_key``; the pack recorded in a
registry collection) are still served: their subjects are found by reading the subject column.

The calls block (gRPC); the service runs them off its event loop, several at once.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from face_api.galleries import lookalikes, rules
from face_api.ops.errors import ApiError
from face_api.ops.limits import SUBJECT_MAX_CHARS
from face_api.ops.settings import GALLERY_INDEXES, GALLERY_METADATA_MAX_BYTES, GalleryIndex

log = logging.getLogger("face_api.galleries")

# Where earlier versions recorded each gallery's pack; only read, for their galleries.
REGISTRY = "face_api_galleries"
_COLLECTION_PREFIX = "gallery_"
# While a gallery is being imported, this collection (its name's hex after it) exists too: the
# gallery is not served until the import drops it, so an import that stops half-way leaves no
# half-gallery (Milvus Lite cannot rename a collection or change its description).
_IMPORTING_PREFIX = "importing_"
_QUERY_PAGE = 16384  # Milvus's largest query window
READ_LEVEL = "Bounded"  # every read that decides no write: see the module's docstring
WAIT_LEVEL = "Strong"  # a write's wait for its visibility, and the reads deletes decide on
# What the write's wait reads (no face needs to have this id: the wait comes before the lookup).
_NO_FACE = "0" * 32
_GENERATION_PREFIX = "generation_"  # the partition a search names: see the module's docstring
# The most faces a Milvus Lite gallery is fit for: a search of 100k took 28 ms (p95 36 ms) here,
# growing with the gallery (336 ms at 1M), where a server's HNSW took a few (benchmarks/README.md).
LITE_FIT_FACES = 100_000
_LITE_RECOUNT = 1_000  # faces a store enrolls into a Lite gallery between two counts of it
# A write's wait, read again (after 0.1, 0.2, ... 1.6 s) while another call drops its collection
# or makes it again (made, indexed and loaded in about a second here).
_WAIT_ATTEMPTS = 6
_NOT_LOADED = 101  # Milvus's ErrCollectionNotLoaded
_MISSING = 100  # Milvus's ErrCollectionNotFound
SUBJECT_KEY = "subject_key"
# How the subject looks (``lookalikes.look_key``): what erasure and the look-alike check go by.
LOOK_KEY = "subject_look"
# An enroll whose gallery another replica dropped mid-way makes it again; this many times.
_ENROLL_ATTEMPTS = 3
_READY_PROBE = "face_api_ready"  # made and dropped once as Milvus Lite starts


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


@dataclass(frozen=True)
class SubjectCount:
    subject: str
    faces: int


# A page of a listing and the listing's whole length, as the gallery service answers them.
@dataclass(frozen=True)
class SubjectList:
    subjects: list[SubjectCount]
    total: int


@dataclass(frozen=True)
class FaceList:
    faces: list[Face]
    total: int


@dataclass(frozen=True)
class _Kind:
    """What a gallery's collection says of itself."""

    pack: str
    dimension: int
    keyed: bool  # has subject_key (made by this version or the one before)
    looked: bool = False  # has subject_look (made by this version)
    importing: bool = False  # an import is filling it (or stopped half-way): not served


@dataclass(frozen=True)
class _Served:
    """What searching a served gallery takes, kept between calls (``GalleryStore._served``)."""

    kind: _Kind
    partitions: list[str] | None  # "_default" and its generation's; None in Milvus Lite
    level: str  # its reads' level: Strong where it has several in-memory replicas
    index: str  # its vector index's type
    changes: int  # the collections made or dropped through this process when it was read


# Collections made or dropped through this process, by database: what a store kept of a gallery
# before the last one is read again (Milvus Lite, one process's database, has nothing else).
_changes: Counter[str] = Counter()
_changes_lock = threading.Lock()


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
        index: GalleryIndex | None = None,  # new galleries' on a server; unset: FLAT
        # Other levels, and writes that do not wait, only for the benchmark's comparisons.
        read_level: str = READ_LEVEL,
        commit_wait: bool = True,
    ) -> None:
        self.pack = pack
        self.dimension = dimension
        self.metadata_max_bytes = metadata_max_bytes
        self.read_level = read_level
        self.uri = uri
        self.lite = uri.endswith(".db")  # as pymilvus tells an embedded Milvus Lite file
        self.index = index if index and not self.lite else GalleryIndex()  # Lite: FLAT only
        self.commit_wait = commit_wait and not self.lite  # Lite sees every write at once
        self._kept: dict[str, _Served] = {}
        self._kept_lock = threading.Lock()
        self._lite_enrolled: Counter[str] = Counter()  # faces enrolled since the last count
        self._lite_warned: set[str] = set()
        self.client = _connect(
            uri, token, connect_timeout_s, _engine_ready if self.lite else _listing
        )

    def survey(self) -> None:
        """Says what the galleries are, once (the service calls it at start): on a server, each
        one whose index is not the one new galleries get (made by an earlier version, or under
        another ``FACE_GALLERY_INDEX``: it keeps its own, and is served); in Milvus Lite, each
        one past the size Lite is fit for."""
        for collection in sorted(self.client.list_collections()):
            name = _gallery_name(collection)
            if name is None:
                continue
            try:
                index, faces = self._index_of(collection), self._count(name)
            except ApiError:
                continue  # dropped meanwhile
            if self.lite:
                self._say_if_past_lite_fit(name, faces)
            elif index != self.index.kind:
                log.warning(
                    "gallery %r (%d faces) keeps its %s index, made by an earlier version or "
                    "under another FACE_GALLERY_INDEX; new galleries get %s. To rebuild it, "
                    "export it and import it with --replace (docs/galleries.md, Galleries at "
                    "scale)",
                    name,
                    faces,
                    index,
                    self.index.kind,
                )
            else:
                log.info("gallery %r: %d faces, %s index", name, faces, index)

    # -- galleries -------------------------------------------------------------------------
    def galleries(self) -> list[GalleryInfo]:
        found = []
        for collection in sorted(self.client.list_collections()):
            name = _gallery_name(collection)
            if name is None:
                continue
            try:
                found.append(self.gallery(name))
            except ApiError as error:
                # dropped since the listing (404), or still being imported (503): not listed
                if error.status not in (404, 503):
                    raise
        return found

    def gallery(self, name: str) -> GalleryInfo:
        kind = self._kind(name)
        return GalleryInfo(name, kind.pack, kind.dimension, self._count(name))

    def delete_gallery(self, name: str) -> int:
        """Drops the gallery (one being imported too); returns how many faces it held."""
        self._kind(name, served=False)
        faces = self._count(name, level=WAIT_LEVEL)
        self._call(self.client.drop_collection, _collection(name))
        self.client.drop_collection(_importing(name))  # no error if there is none
        self._changed()
        if self._has_registry():  # an earlier version's record of it
            self.client.delete(REGISTRY, ids=[name])  # the name is checked: letters, digits, _.-
        return faces

    # -- faces -----------------------------------------------------------------------------
    def enroll(
        self,
        gallery: str,
        subject: str,
        features: np.ndarray,
        metadata: dict[str, Any] | None = None,
    ) -> list[str]:
        """Adds one face per row of ``features`` (unit embeddings); returns their new ids.

        The gallery is made on its first enrollment, for this store's pack, and made again if
        another replica drops it meanwhile.
        """
        subject = _check(rules.check_subject, "subject", subject)
        _check(lambda m: rules.check_metadata(m, self.metadata_max_bytes), "metadata", metadata)
        vectors = self._vectors(features)
        ids = [uuid.uuid4().hex for _ in vectors]
        for _ in range(_ENROLL_ATTEMPTS):
            try:
                kind = self._open_or_create(gallery)
                self._refuse_lookalike(gallery, subject, kind)
                rows = [
                    {"face_id": i, **_subject_columns(subject, kind), "metadata": metadata or {}}
                    | {"vector": v.tolist()}
                    for i, v in zip(ids, vectors, strict=True)
                ]
                self._call(self.client.insert, _collection(gallery), rows)
                self._wait_visible(_collection(gallery))
                if self.lite:
                    self._count_lite_enrolls(gallery, len(ids))
                return ids
            except ApiError as error:
                if error.status != 404:
                    raise
                log.info("gallery %s was dropped while enrolling; making it again", gallery)
        raise ApiError.unavailable(f"gallery {gallery!r} is being dropped and made again")

    def search(
        self, gallery: str, features: np.ndarray, limit: int, threshold: float | None = None
    ) -> list[list[Match]]:
        """The best ``limit`` faces for each row of ``features``, best first, over ``threshold``."""
        vectors = self._vectors(features)
        hits = self._search(gallery, [v.tolist() for v in vectors], limit)
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
        subject = rules.subject_query(subject)
        found = self._search(
            gallery, [vector.tolist()], 1, lambda kind: self._subject_filter(gallery, subject, kind)
        )
        hits = found and found[0]
        if not hits:
            raise ApiError.not_found(f"subject {subject!r} is not in gallery {gallery!r}")
        best = hits[0]
        return Match(
            _hit_id(best), best["entity"]["subject"], _metadata(best["entity"]), best["distance"]
        )

    def subjects(self, gallery: str, offset: int, limit: int) -> tuple[list[tuple[str, int]], int]:
        """A page of (subject, faces) in name order, and the number of subjects."""
        self._kind(gallery)
        counts: dict[str, int] = {}
        for row in self._all(gallery, ["subject"]):
            counts[row["subject"]] = counts.get(row["subject"], 0) + 1
        names = sorted(counts)
        return [(s, counts[s]) for s in names[offset : offset + limit]], len(names)

    def faces(
        self, gallery: str, offset: int, limit: int, subject: str | None = None
    ) -> tuple[list[Face], int]:
        """A page of faces (by subject, then id), and how many there are."""
        kind = self._kind(gallery)
        if subject is not None:
            subject = rules.subject_query(subject)
        where = "" if subject is None else self._subject_filter(gallery, subject, kind)
        # The order needs every face's subject; only the page's faces need their metadata (up
        # to 16 KiB each): read for them alone.
        rows = [] if where is None else self._all(gallery, ["subject"], where)
        if subject is not None and not rows:
            raise ApiError.not_found(f"subject {subject!r} is not in gallery {gallery!r}")
        rows.sort(key=lambda r: (r["subject"], r["face_id"]))
        shown = rows[offset : offset + limit]
        metadata = {}
        # pymilvus quotes ids unescaped: only ids of the one shape are asked for (all of them)
        ids = [r["face_id"] for r in shown if _is_face_id(r["face_id"])]
        if ids:
            found = self._read(
                self.client.get, _collection(gallery), ids=ids, output_fields=["metadata"]
            )
            metadata = {r["face_id"]: _metadata(r) for r in found}
        page = [Face(r["face_id"], r["subject"], metadata.get(r["face_id"])) for r in shown]
        return page, len(rows)

    def delete_face(self, gallery: str, face_id: str) -> int:
        """Deletes the face; returns how many faces that was (1; 404 for none)."""
        _check(rules.check_face_id, "face_id", face_id)  # pymilvus quotes ids unescaped
        self._kind(gallery)
        found = self._read(
            self.client.get,
            _collection(gallery),
            level=WAIT_LEVEL,  # a face enrolled a moment ago, through any replica, is found
            ids=[face_id],
            output_fields=["face_id"],
        )
        if not found:
            raise ApiError.not_found(f"face {face_id!r} is not in gallery {gallery!r}")
        self._call(self.client.delete, _collection(gallery), ids=[face_id])
        self._wait_visible(_collection(gallery))
        return 1

    def delete_subject(self, gallery: str, subject: str) -> int:
        """Deletes every face of every subject that looks like ``subject`` (what a person would
        call by that name: its NFC form, an invisible character or look-alike letter apart);
        returns how many there were (404 for none)."""
        where = self._look_filter(gallery, subject, self._kind(gallery), level=WAIT_LEVEL)
        count = 0 if where is None else self._count(gallery, where, level=WAIT_LEVEL)
        if not count:
            raise ApiError.not_found(f"subject {subject!r} is not in gallery {gallery!r}")
        self._call(self.client.delete, _collection(gallery), filter=where)
        self._wait_visible(_collection(gallery))
        return count

    # -- moving a gallery: export and import (transfer.py) ----------------------------------
    def rows(self, gallery: str, batch: int = 1000) -> Iterator[dict[str, Any]]:
        """Every face of the gallery with its embedding (``face_id``, ``subject``,
        ``metadata``, ``vector``), read ``batch`` at a time: any size streams."""
        from pymilvus import MilvusException

        self._kind(gallery)
        try:
            iterator = self._call(
                self.client.query_iterator,
                _collection(gallery),
                batch_size=batch,
                filter="",
                output_fields=["face_id", "subject", "metadata", "vector"],
                consistency_level=self.read_level,
            )
            try:
                while batch := iterator.next():
                    yield from batch
            finally:
                iterator.close()
        except MilvusException as exc:
            if exc.code != _MISSING:
                raise
            raise ApiError.not_found(f"gallery {gallery!r} was dropped while read") from None

    def begin_import(self, gallery: str, replace: bool) -> None:
        """An empty gallery for this store's pack, not served until ``finish_import``. An
        existing gallery, or one an import left unfinished, is replaced only if asked."""
        _check(rules.check_gallery, "gallery", gallery)
        if self.client.has_collection(_importing(gallery)):
            if not replace:
                raise ApiError(
                    409,
                    f"an import of gallery {gallery!r} did not finish (or runs now): --replace "
                    "discards it",
                )
            self.abandon_import(gallery)
        elif self.client.has_collection(_collection(gallery)):
            if not replace:
                raise ApiError(409, f"gallery {gallery!r} exists: --replace replaces it")
            self.delete_gallery(gallery)
        self.client.create_collection(_importing(gallery), dimension=2)  # first: never served
        self._changed()
        self._create(gallery, {"pack": self.pack, "imported": True})

    def import_faces(self, gallery: str, faces: list[dict[str, Any]]) -> None:
        """Faces into a gallery being imported, each keeping its id: ``face_id``, ``subject``,
        ``metadata``, ``vector``, each held to enrollment's rules (the subject in NFC, the
        metadata's, the pack's embedding size)."""
        kind = self._kind(gallery, served=False)
        vectors = self._vectors(np.stack([f["vector"] for f in faces]))
        rows = []
        for face, vector in zip(faces, vectors, strict=True):
            _check(rules.check_face_id, "face_id", face["face_id"])
            subject = _check(rules.check_subject, "subject", face["subject"])
            metadata = face.get("metadata") or {}
            _check(lambda m: rules.check_metadata(m, self.metadata_max_bytes), "metadata", metadata)
            rows.append(
                {"face_id": face["face_id"], **_subject_columns(subject, kind)}
                | {"metadata": metadata, "vector": vector.tolist()}
            )
        # The file's ids are checked to be distinct (transfer.py); upsert: a batch sent again
        # after a lost answer adds nothing twice.
        self._call(self.client.upsert, _collection(gallery), rows)

    def finish_import(self, gallery: str, faces: int) -> None:
        """Serves the imported gallery, once it holds exactly ``faces`` faces."""
        held = self._count(gallery, level=WAIT_LEVEL)
        if held != faces:
            raise ApiError.invalid(
                "file", f"the import of {gallery!r} holds {held} faces where {faces} were read"
            )
        self.client.drop_collection(_importing(gallery))
        self._changed()

    def abandon_import(self, gallery: str) -> None:
        """Drops what an import wrote: nothing of it is left, or served."""
        self.client.drop_collection(_collection(gallery))
        self.client.drop_collection(_importing(gallery))
        self._changed()

    # -- internals -------------------------------------------------------------------------
    def _kind(self, name: str, served: bool = True) -> _Kind:
        """The gallery's pack, embedding size and layout, as its collection says; 404 if there
        is no such gallery, 503 while it is being imported (unless not ``served``: deleting
        it). Erasure and listings take any pack's gallery."""
        _check(rules.check_gallery, "gallery", name)
        described = self._call(self.client.describe_collection, _collection(name))
        fields = {field["name"]: field for field in described["fields"]}
        about = _description(described.get("description", ""))
        pack = str(about.get("pack", "")) or self._registered_pack(name)
        importing = bool(about.get("imported")) and self.client.has_collection(_importing(name))
        if importing and served:
            raise ApiError.unavailable(
                f"gallery {name!r} is being imported (an import stopped half-way leaves it so: "
                "import it again with --replace, or delete it)"
            )
        dimension = int(fields["vector"]["params"]["dim"])
        return _Kind(
            pack, dimension, SUBJECT_KEY in fields, looked=LOOK_KEY in fields, importing=importing
        )

    def _checked(self, name: str) -> _Kind:
        """The gallery's kind, which must be this store's pack: features of different models
        are never mixed."""
        kind = self._kind(name)
        if (kind.pack, kind.dimension) != (self.pack, self.dimension):
            raise ApiError.invalid(
                "gallery",
                f"gallery {name!r} holds features of model pack {kind.pack!r} "
                f"({kind.dimension}-d); this server runs {self.pack!r} "
                f"({self.dimension}-d): features of different models are never mixed",
            )
        return kind

    def _open_or_create(self, name: str) -> _Kind:
        """The gallery's kind, made first if there is none: Milvus makes a collection once,
        whoever asks at the same moment (the same schema again is no error)."""
        from pymilvus import MilvusException

        try:
            return self._checked(name)
        except ApiError as error:
            if error.status != 404:
                raise
        try:
            self._create(name, {"pack": self.pack})
        except MilvusException as exc:
            # Made at the same moment by a server of another pack: the check below says so.
            if "duplicate collection" not in str(exc.message):
                raise
        return self._checked(name)

    def _create(self, name: str, about: dict[str, Any]) -> None:
        """The gallery's collection, its description ``about`` it (its pack, and whether an
        import fills it)."""
        from pymilvus import DataType

        schema = self.client.create_schema(
            auto_id=False, enable_dynamic_field=False, description=json.dumps(about)
        )
        schema.add_field("face_id", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("subject", DataType.VARCHAR, max_length=SUBJECT_MAX_CHARS * 4)
        schema.add_field(SUBJECT_KEY, DataType.VARCHAR, max_length=SUBJECT_MAX_CHARS * 8)
        schema.add_field(LOOK_KEY, DataType.VARCHAR, max_length=SUBJECT_MAX_CHARS * 8)
        schema.add_field("metadata", DataType.JSON)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dimension)
        index = self.client.prepare_index_params()
        index.add_index(
            "vector", metric_type="COSINE", index_type=self.index.kind, params=self.index.build
        )
        self._call(
            self.client.create_collection,
            _collection(name),
            schema=schema,
            index_params=index,
            consistency_level=READ_LEVEL,
        )
        self._changed()

    def _registered_pack(self, name: str) -> str:
        """An earlier version's gallery: its pack, from the registry it kept ("" if none)."""
        if not self._has_registry():
            return ""
        found = self._read(self.client.get, REGISTRY, ids=[name], output_fields=["pack"])
        return found[0]["pack"] if found else ""

    def _has_registry(self) -> bool:
        return bool(self.client.has_collection(REGISTRY))

    def _subject_filter(
        self, gallery: str, subject: str, kind: _Kind, level: str | None = None
    ) -> str | None:
        """A filter expression for ``subject``'s faces in ``gallery`` made only of hex digits the
        store computed: its key, or (a gallery made before keys) its faces' ids; None when a
        gallery without keys holds no face of it."""
        key = _subject_key(subject)
        if kind.keyed:
            return f'{SUBJECT_KEY} == "{key}"'
        rows = self._all(gallery, ["subject"], level=level)
        ids = [_checked_id(r["face_id"]) for r in rows if r["subject"] == subject]
        return f"face_id in [{', '.join(ids)}]" if ids else None

    def _look_filter(
        self, gallery: str, subject: str, kind: _Kind, level: str | None = None
    ) -> str | None:
        """A filter expression for the faces of every subject that looks like ``subject``, made
        only of hex digits the store computed; None when the gallery holds none. A gallery made
        before looks were kept is read whole (its subjects' looks computed here)."""
        key = lookalikes.look_key(subject)
        if kind.looked:
            return f'{LOOK_KEY} == "{key}"'
        rows = self._all(gallery, ["subject"], level=level)
        ids = [_checked_id(r["face_id"]) for r in rows if lookalikes.look_key(r["subject"]) == key]
        return f"face_id in [{', '.join(ids)}]" if ids else None

    def _refuse_lookalike(self, gallery: str, subject: str, kind: _Kind) -> None:
        """409 when the gallery holds another name that looks like ``subject``: a gallery keeps
        one name per look, so that erasure by the name a person sees reaches one person."""
        if not kind.looked:
            return  # made before looks were kept: erasure reads it whole
        look, own = lookalikes.look_key(subject), _subject_key(subject)
        where = f'{LOOK_KEY} == "{look}" and {SUBJECT_KEY} != "{own}"'
        found = self._read(
            self.client.query,
            _collection(gallery),
            filter=where,
            output_fields=["subject"],
            limit=1,
        )
        if found:
            raise ApiError(
                409,
                f"subject {subject!r} looks the same as {found[0]['subject']!r}, enrolled in "
                f"gallery {gallery!r}: enroll under that name, or under one that looks different",
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

    def _count(self, gallery: str, where: str = "", level: str | None = None) -> int:
        rows = self._read(
            self.client.query,
            _collection(gallery),
            level=level,
            filter=where,
            output_fields=["count(*)"],
        )
        return int(rows[0]["count(*)"])

    def _all(
        self, gallery: str, fields: list[str], where: str = "", level: str | None = None
    ) -> list[dict[str, Any]]:
        return self._read(
            self._query_all, _collection(gallery), level=level, filter=where, fields=fields
        )

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

    def _read(
        self, call: Callable[..., Any], collection: str, level: str | None = None, **kwargs: Any
    ) -> Any:
        """``call(collection, ...)`` at ``level``, by default the level the gallery is read at
        (the store's, ``Bounded``, unless it has several in-memory replicas).

        A Milvus server that restarted serves a collection again only once it is loaded again
        (it reloads on its own, later): such a collection is loaded here and read once more.
        """
        from pymilvus import MilvusException

        if level is None:
            kept = self._kept.get(_gallery_name(collection) or "")
            level = kept.level if kept else self.read_level
        try:
            return self._call(call, collection, consistency_level=level, **kwargs)
        except MilvusException as exc:
            if exc.code != _NOT_LOADED and "not loaded" not in str(exc.message):
                raise
            log.info("collection %s not loaded on the server (restarted?); loading it", collection)
            self._forget(_gallery_name(collection) or "")  # its replicas may differ now
            self._call(self.client.load_collection, collection)
            return self._call(call, collection, consistency_level=level, **kwargs)

    def _search(
        self,
        gallery: str,
        data: list[list[float]],
        limit: int,
        where: Callable[[_Kind], str | None] = lambda kind: "",
    ) -> list[list[dict[str, Any]]] | None:
        """The gallery's best ``limit`` faces for each vector of ``data`` (and ``where``'s
        filter of its kind; None when that filter says no face can match), in one round trip
        when what the search needs of the gallery is kept. A search that fails on what was kept
        (the gallery made again since, by any replica: its generation's partition is gone) reads
        the gallery again and searches once more (see the module's docstring)."""
        from pymilvus import MilvusException

        served, fresh = self._served(gallery)
        while True:
            condition = where(served.kind)
            if condition is None:
                return None
            try:
                return self._read(
                    self.client.search,
                    _collection(gallery),
                    level=served.level,
                    data=data,
                    limit=limit,
                    filter=condition,
                    partition_names=served.partitions,
                    output_fields=["subject", "metadata"],
                    search_params={
                        "metric_type": "COSINE",
                        "params": self._search_params(served.index, limit),
                    },
                )
            except ApiError as error:
                if error.status == 404:
                    self._forget(gallery)
                raise
            except MilvusException as exc:
                if is_connection_failure(exc):
                    raise
                if fresh:
                    raise self._in_flux(gallery, exc) from None
                if _is_missing_partition(exc):
                    log.info("gallery %s was made again since it was last read", gallery)
                served, fresh = self._served(gallery, again=True)

    def _served(self, gallery: str, again: bool = False) -> tuple[_Served, bool]:
        """What searching ``gallery`` takes, and whether it was read now: kept, or read
        (``again``: whatever is kept). 404 for no such gallery, 503 while it is imported or
        made or dropped by another call, 422 for another pack's."""
        from pymilvus import MilvusException

        with self._kept_lock:
            kept = self._kept.get(gallery)
        changes = _changes[self.uri]
        if kept is not None and not again and kept.changes == changes:
            return kept, False
        kind = self._checked(gallery)
        collection = _collection(gallery)
        partitions, level = None, self.read_level
        try:
            if not self.lite:
                partitions = ["_default", self._generation(collection)]
                if self._replicas(collection) > 1:  # a write's wait reaches one of them only
                    level = WAIT_LEVEL
            index = self._index_of(collection)
        except MilvusException as exc:
            if is_connection_failure(exc):
                raise
            raise self._in_flux(gallery, exc) from None
        served = _Served(kind, partitions, level, index, changes)
        with self._kept_lock:
            self._kept[gallery] = served
        return served, True

    def _replicas(self, collection: str) -> int:
        """The collection's in-memory replicas; 0 while it has none: not loaded (a server that
        restarted loads it again: Milvus 2.3 says "collection not loaded", or "replica not
        found" once released), or half made or dropped. A search then loads it or fails, and
        it is read again."""
        from pymilvus import MilvusException

        try:
            return len(self.client.describe_replica(collection))
        except MilvusException as exc:
            if is_connection_failure(exc):
                raise
            return 0

    def _in_flux(self, gallery: str, exc: Any) -> ApiError:
        """What to answer for a gallery that failed a read while another call makes or drops
        it (a collection half made: no index, or not loaded yet; or half dropped): 404 once it
        is gone, else 503 (retry)."""
        self._forget(gallery)
        if not self.client.has_collection(_collection(gallery)):
            return ApiError.not_found(f"gallery {gallery!r} does not exist")
        log.info("gallery %s is being made or dropped: %s", gallery, exc.message)
        return ApiError.unavailable(f"gallery {gallery!r} is being made or dropped")

    def _forget(self, gallery: str) -> None:
        with self._kept_lock:
            self._kept.pop(gallery, None)

    def _changed(self) -> None:
        """A collection was made or dropped through this store: every store of the process
        reads its galleries again (in Milvus Lite nothing else would tell them)."""
        with _changes_lock:
            _changes[self.uri] += 1

    def _generation(self, collection: str) -> str:
        """The partition that names this collection, made on its first search: a collection
        made again under the same name has another (and two made at once both serve)."""
        for partition in self._call(self.client.list_partitions, collection):
            if partition.startswith(_GENERATION_PREFIX):
                return partition
        partition = _GENERATION_PREFIX + uuid.uuid4().hex
        self._call(self.client.create_partition, collection, partition)
        return partition

    def _index_of(self, collection: str) -> str:
        """The type of the collection's vector index."""
        return str(self._call(self.client.describe_index, collection, "vector")["index_type"])

    def _search_params(self, index: str, limit: int) -> dict[str, int]:
        """The search parameters for an index of type ``index``: the setting's for the index
        new galleries get, the defaults for the others (galleries of earlier versions)."""
        if index == self.index.kind:
            params = dict(self.index.search)
        elif index in GALLERY_INDEXES:
            params = dict(GalleryIndex.of(index).search)
        else:  # an index this service does not make: Milvus's defaults
            params = {}
        if "ef" in params:  # HNSW searches at least as many candidates as it answers
            params["ef"] = max(params["ef"], limit)
        return params

    def _wait_visible(self, collection: str) -> None:
        """Returns once what was written to ``collection`` before is seen by every read, through
        any client: a ``Strong`` read waits until every shard of it has consumed all writes
        acknowledged before the read began (see the module's docstring)."""
        from pymilvus import MilvusException

        if not self.commit_wait:
            return
        for attempt in range(_WAIT_ATTEMPTS):
            try:
                self._read(  # a collection not loaded (a server restarted) is loaded first
                    self.client.query,
                    collection,
                    level=WAIT_LEVEL,
                    filter=f'face_id == "{_NO_FACE}"',
                    output_fields=["face_id"],
                )
                return
            except ApiError as error:
                if error.status != 404:
                    raise
                return  # dropped since the write, the write with it: every read is a 404
            except MilvusException as exc:
                if is_connection_failure(exc):
                    raise
                if not self.client.has_collection(collection):
                    return  # dropped while read
                # Being dropped, or made again by another call and not indexed or loaded yet:
                # read the collection as it is once its maker is done.
                log.info("waiting for a write to %s: %s", collection, exc.message)
                time.sleep(0.1 * 2**attempt)
        raise ApiError.unavailable(
            f"gallery {_gallery_name(collection)!r} was written, and is being made or dropped"
        )

    def _count_lite_enrolls(self, gallery: str, faces: int) -> None:
        """Counts a Lite gallery now and then (every ``_LITE_RECOUNT`` faces this store
        enrolled into it), to say once when it passes the size Lite is fit for."""
        if gallery in self._lite_warned:
            return
        first = gallery not in self._lite_enrolled
        self._lite_enrolled[gallery] += faces
        if first or self._lite_enrolled[gallery] >= _LITE_RECOUNT:
            self._lite_enrolled[gallery] = 0
            self._say_if_past_lite_fit(gallery, self._count(gallery))

    def _say_if_past_lite_fit(self, gallery: str, faces: int) -> None:
        if faces > LITE_FIT_FACES and gallery not in self._lite_warned:
            self._lite_warned.add(gallery)
            log.warning(
                "gallery %r holds %d faces, past the %d Milvus Lite is fit for: its searches "
                "slow down with its size (docs/galleries.md, Galleries at scale); move it to a "
                "Milvus server (export, import) for an index that does not",
                gallery,
                faces,
                LITE_FIT_FACES,
            )

    @staticmethod
    def _call(call: Callable[..., Any], collection: str, *args: Any, **kwargs: Any) -> Any:
        """``call(collection, ...)``; a collection that does not exist (never made, or dropped
        by another replica, even mid-call) is the gallery's 404."""
        from pymilvus import MilvusException

        try:
            return call(collection, *args, **kwargs)
        except MilvusException as exc:
            if exc.code != _MISSING:
                raise
            name = _gallery_name(collection) or collection
            raise ApiError.not_found(f"gallery {name!r} does not exist") from None


def _connect(
    uri: str,
    token: str | None,
    timeout_s: float,
    prepare: Callable[[Any], Any] = lambda client: client.list_collections(),
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

    # pymilvus logs every failed call with its traceback before raising it, "collection not
    # found" included: the store's 404 for a gallery not made yet. The store raises or logs what
    # matters. (Set once pymilvus is loaded: loading it sets up its loggers.)
    logging.getLogger("pymilvus.decorators").setLevel(logging.CRITICAL)
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


def _is_missing_partition(exc: Any) -> bool:
    """A search named a partition the collection does not have (Milvus 2.3 answers code 65535,
    "partition name ... not found"; later versions ErrPartitionNotFound, 200)."""
    message = str(exc.message).lower()
    return exc.code == 200 or ("partition" in message and "not found" in message)


def _listing(client: Any) -> None:
    client.list_collections()


def _engine_ready(client: Any) -> None:
    """Milvus Lite's engine serves collections: it made (and dropped) one. Listing answers before
    the engine is up, and the first collection made then failed (1 fresh start in 20)."""
    if client.has_collection(_READY_PROBE):
        client.drop_collection(_READY_PROBE)
    client.create_collection(_READY_PROBE, dimension=2)
    client.drop_collection(_READY_PROBE)


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


def _gallery_name(collection: str) -> str | None:
    """The gallery a collection holds; None for a collection that holds none."""
    if not collection.startswith(_COLLECTION_PREFIX):
        return None
    try:
        name = bytes.fromhex(collection.removeprefix(_COLLECTION_PREFIX)).decode("utf-8")
    except ValueError:
        return None
    try:
        return rules.check_gallery(name)
    except ValueError:
        return None


def _importing(gallery: str) -> str:
    return _IMPORTING_PREFIX + gallery.encode("utf-8").hex()


def _description(description: str) -> dict[str, Any]:
    """What a collection's description says of its gallery (nothing for an earlier version's)."""
    try:
        described = json.loads(description)
    except ValueError:
        return {}
    return described if isinstance(described, dict) else {}


def _check(rule: Callable[[Any], Any], field: str, value: Any) -> Any:
    """``rule(value)``: the value as the rule takes it, or the field's 422."""
    try:
        return rule(value)
    except ValueError as exc:
        raise ApiError.refused(field, exc) from None


def _checked_id(face_id: str) -> str:
    """A face id as a quoted literal, after checking it is one (32 hex digits)."""
    _check(rules.check_face_id, "face_id", face_id)
    return f'"{face_id}"'


def _subject_columns(subject: str, kind: _Kind) -> dict[str, str]:
    """A face's subject columns, as the gallery's layout has them."""
    columns = {"subject": subject}
    if kind.keyed:
        columns[SUBJECT_KEY] = _subject_key(subject)
    if kind.looked:
        columns[LOOK_KEY] = lookalikes.look_key(subject)
    return columns


def _is_face_id(face_id: str) -> bool:
    try:
        rules.check_face_id(face_id)
    except ValueError:
        return False
    return True


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
