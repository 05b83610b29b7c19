"""A gallery as one file: written from any store, read into any store, keeping its face ids.

The file is gzip-compressed JSON Lines: a header (the gallery's name, its model pack and embedding
size), one line a face (``faceId``, ``subject``, ``metadata``, ``embedding`` as ``/v1/feature``
encodes it: base64 of little-endian float32), and an end line with the number of faces. Both ways
stream, a batch of faces at a time, so a million faces never sit in memory at once.

Import is a door like enroll, with enroll's rules: every face is held to them (its id's shape,
its subject in NFC and visible, its metadata's bounds, the served pack's embedding size: the
pack and size come from the deployment, never from the file), each line is bounded in length
before it is read (a 1 MB gzip file held one 1 GiB line), two faces may not share an id, nor two
different names a look (``lookalikes.py``). A file cut short (no end line, or gzip's own check) is
refused, every refusal is one line naming the face, and an import that stops for any reason
leaves no half-gallery: the store serves it only once every face is in
(``GalleryStore.begin_import``/``finish_import``).

Export writes the user's own file only: a new file, private to its user (``0600``), created
without following links and renamed into place once whole.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from face_api.galleries import lookalikes, rules
from face_api.galleries.store import GalleryStore
from face_api.ops.errors import ApiError
from face_api.pipeline.features import decode_feature, encode_feature

FORMAT = "face-api-gallery"
VERSION = 1
SUFFIX = ".faces.jsonl.gz"
BATCH = 1000  # faces read or written at once
# The longest line a face may take: its embedding (base64 of up to 4,096 floats), its subject
# (256 characters, escaped) and its metadata (64 KiB at most, escaped), with room to spare.
MAX_LINE_BYTES = 1024 * 1024


def export_gallery(store: GalleryStore, gallery: str, path: Path) -> int:
    """Writes ``gallery`` to ``path`` (whole, or not at all: a partial file never takes the
    name); returns how many faces it holds."""
    info = store.gallery(gallery)
    faces = 0
    # A new file of a random name beside the target (O_EXCL, never through a link), 0600.
    descriptor, partial = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".partial"
    )
    try:
        with os.fdopen(descriptor, "wb") as raw, gzip.open(raw, "wt", encoding="utf-8") as text:
            header = {
                "format": FORMAT,
                "version": VERSION,
                "gallery": gallery,
                "pack": info.pack,
                "dimension": info.dimension,
            }
            text.write(json.dumps(header) + "\n")
            for row in store.rows(gallery, BATCH):
                face = {
                    "faceId": row["face_id"],
                    "subject": row["subject"],
                    "metadata": row["metadata"] or None,
                    "embedding": encode_feature(np.asarray(row["vector"], np.float32)),
                }
                text.write(json.dumps(face, ensure_ascii=False) + "\n")
                faces += 1
            text.write(json.dumps({"end": True, "faces": faces}) + "\n")
        os.replace(partial, path)  # replaces a link at the name, never writes through it
    finally:
        Path(partial).unlink(missing_ok=True)
    return faces


def read_header(path: Path) -> dict[str, Any]:
    """The file's header: ``gallery``, ``pack``, ``dimension``."""
    try:
        with _lines(path) as lines:
            header = json.loads(_line(lines, path, 0))
    except (OSError, ValueError, EOFError) as exc:
        raise ApiError.invalid("file", f"{path} is not a gallery file ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ApiError.invalid("file", f"{path} is not a gallery file")
    if header.get("version") != VERSION:
        raise ApiError.invalid("file", f"{path} is version {header.get('version')}, not {VERSION}")
    if not isinstance(header.get("pack"), str) or not isinstance(header.get("gallery"), str):
        raise ApiError.invalid("file", f"{path}'s header does not name its gallery and pack")
    return header


def import_gallery(
    store: GalleryStore, path: Path, gallery: str | None = None, replace: bool = False
) -> tuple[str, int]:
    """Reads the file into ``store`` as ``gallery`` (default: its own name), keeping its face
    ids; returns the gallery's name and faces. The file must hold ``store``'s pack at its
    embedding size, and an existing gallery is replaced only if asked."""
    header = read_header(path)
    if (header["pack"], header.get("dimension")) != (store.pack, store.dimension):
        raise ApiError.invalid(
            "file",
            f"{path} holds features of model pack {header['pack']!r} "
            f"({header.get('dimension')}-d); this deployment serves {store.pack!r} "
            f"({store.dimension}-d): features of different models are never mixed",
        )
    target = gallery or header["gallery"]
    store.begin_import(target, replace)
    try:
        faces = 0
        for batch in _batches(path, store.dimension, store.metadata_max_bytes):
            store.import_faces(target, batch)
            faces += len(batch)
        store.finish_import(target, faces)
    except BaseException:
        store.abandon_import(target)  # whatever stopped it: nothing of it is left
        raise
    return target, faces


def _batches(path: Path, dimension: int, metadata_max_bytes: int) -> Iterator[list[dict[str, Any]]]:
    """The file's faces, ``BATCH`` at a time, as the store takes them; the end line must come,
    and say as many faces as came before it."""
    batch: list[dict[str, Any]] = []
    ids: set[str] = set()
    looks: dict[str, str] = {}  # look -> the subject that has it
    read = 0
    try:
        with _lines(path) as lines:
            _line(lines, path, 0)  # the header
            while text := _line(lines, path, read + 1):
                item = json.loads(text)
                if isinstance(item, dict) and item.get("end") is True:
                    if item.get("faces") != read:
                        raise ApiError.invalid(
                            "file", f"{path} ends at {read} faces where it says {item['faces']}"
                        )
                    if _line(lines, path, read + 2):
                        raise ApiError.invalid("file", f"{path} goes on after its end line")
                    if batch:
                        yield batch
                    return
                batch.append(_face(item, read + 1, dimension, metadata_max_bytes, ids, looks))
                read += 1
                if len(batch) == BATCH:
                    yield batch
                    batch = []
    except (OSError, EOFError, ValueError, RecursionError) as exc:
        # RecursionError: nested deeper than the JSON parser goes
        reason = "nested too deep" if isinstance(exc, RecursionError) else str(exc)
        raise ApiError.invalid("file", f"{path} is damaged after {read} faces ({reason})") from None
    raise ApiError.invalid("file", f"{path} is cut short after {read} faces (no end line)")


def _face(
    item: Any,
    number: int,
    dimension: int,
    metadata_max_bytes: int,
    ids: set[str],
    looks: dict[str, str],
) -> dict[str, Any]:
    """One line's face, held to enroll's rules (the store holds it to them again): a 422 that
    names the face for anything wrong."""

    def refuse(reason: str) -> ApiError:
        return ApiError.invalid("file", f"face {number}: {reason}")

    if not isinstance(item, dict):
        raise refuse("not a JSON object")
    face_id, embedding = item.get("faceId"), item.get("embedding")
    try:
        rules.check_face_id(face_id if isinstance(face_id, str) else "")
        subject = rules.check_subject(
            item["subject"] if isinstance(item.get("subject"), str) else ""
        )
        metadata = rules.check_metadata(item.get("metadata"), metadata_max_bytes)
    except ValueError as exc:
        raise refuse(f"{exc} (faceId {face_id!r}, subject {item.get('subject')!r})") from None
    if face_id in ids:
        raise refuse(f"faceId {face_id} is given twice")
    ids.add(face_id)
    look = lookalikes.look(subject)
    if looks.setdefault(look, subject) != subject:
        raise refuse(f"subject {subject!r} looks the same as {looks[look]!r}, another in the file")
    if not isinstance(embedding, str):
        raise refuse("embedding is not base64 text")
    try:
        vector = decode_feature(embedding, "embedding")
    except ApiError as error:
        raise refuse(error.message) from None
    if vector.shape != (dimension,):
        raise refuse(f"embedding has {vector.size} values, not the served pack's {dimension}")
    return {"face_id": face_id, "subject": subject, "metadata": metadata, "vector": vector}


def _lines(path: Path) -> gzip.GzipFile:
    return gzip.open(path, "rb")


def _line(lines: gzip.GzipFile, path: Path, number: int) -> str:
    """Line ``number`` (0: the header) as text, read no further than ``MAX_LINE_BYTES``; ""
    at the end of the file."""
    raw = lines.readline(MAX_LINE_BYTES + 1)
    if len(raw) > MAX_LINE_BYTES:
        raise ApiError.invalid("file", f"{path}: line {number + 1} is over {MAX_LINE_BYTES} bytes")
    return raw.decode("utf-8")
