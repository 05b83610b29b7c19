"""A gallery as one file: written from any store, read into any store, keeping its face ids.

The file is gzip-compressed JSON Lines: a header (the gallery's name, its model pack and embedding
size), one line a face (``faceId``, ``subject``, ``metadata``, ``embedding`` as ``/v1/feature``
encodes it: base64 of little-endian float32), and an end line with the number of faces. Both ways
stream, a batch of faces at a time, so a million faces never sit in memory at once. A file cut
short (no end line, or gzip's own check) is refused, and an import that stops for any reason
leaves no half-gallery: the store serves it only once every face is in
(``GalleryStore.begin_import``/``finish_import``).
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from face_api.galleries.store import GalleryStore
from face_api.ops.errors import ApiError
from face_api.pipeline.features import decode_feature, encode_feature

FORMAT = "face-api-gallery"
VERSION = 1
SUFFIX = ".faces.jsonl.gz"
BATCH = 1000  # faces read or written at once


def export_gallery(store: GalleryStore, gallery: str, path: Path) -> int:
    """Writes ``gallery`` to ``path`` (whole, or not at all: a partial file never takes the
    name); returns how many faces it holds."""
    info = store.gallery(gallery)
    partial = path.with_name(path.name + ".partial")
    faces = 0
    try:
        with gzip.open(partial, "wt", encoding="utf-8") as text:
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
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return faces


def read_header(path: Path) -> dict[str, Any]:
    """The file's header: ``gallery``, ``pack``, ``dimension``."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as text:
            header = json.loads(text.readline())
    except (OSError, ValueError, EOFError) as exc:
        raise ApiError.invalid("file", f"{path} is not a gallery file ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ApiError.invalid("file", f"{path} is not a gallery file")
    if header.get("version") != VERSION:
        raise ApiError.invalid("file", f"{path} is version {header.get('version')}, not {VERSION}")
    return header


def import_gallery(
    store: GalleryStore, path: Path, gallery: str | None = None, replace: bool = False
) -> tuple[str, int]:
    """Reads the file into ``store`` as ``gallery`` (default: its own name), keeping its face
    ids; returns the gallery's name and faces. The file must hold ``store``'s pack, and an
    existing gallery is replaced only if asked."""
    header = read_header(path)
    if (header["pack"], header["dimension"]) != (store.pack, store.dimension):
        raise ApiError.invalid(
            "file",
            f"{path} holds features of model pack {header['pack']!r} ({header['dimension']}-d); "
            f"this deployment serves {store.pack!r} ({store.dimension}-d): features of different "
            "models are never mixed",
        )
    target = gallery or header["gallery"]
    store.begin_import(target, replace)
    try:
        faces = 0
        for batch in _batches(path):
            store.import_faces(target, batch)
            faces += len(batch)
        store.finish_import(target, faces)
    except BaseException:
        store.abandon_import(target)  # whatever stopped it: nothing of it is left
        raise
    return target, faces


def _batches(path: Path) -> Iterator[list[dict[str, Any]]]:
    """The file's faces, ``BATCH`` at a time, as the store takes them; the end line must come,
    and say as many faces as came before it."""
    batch: list[dict[str, Any]] = []
    read = 0
    try:
        with gzip.open(path, "rt", encoding="utf-8") as text:
            text.readline()  # the header
            for line in text:
                item = json.loads(line)
                if item.get("end"):
                    if item.get("faces") != read:
                        raise ApiError.invalid(
                            "file", f"{path} ends at {read} faces where it says {item['faces']}"
                        )
                    if batch:
                        yield batch
                    return
                batch.append(
                    {
                        "face_id": item["faceId"],
                        "subject": item["subject"],
                        "metadata": item.get("metadata"),
                        "vector": decode_feature(item["embedding"], "embedding"),
                    }
                )
                read += 1
                if len(batch) == BATCH:
                    yield batch
                    batch = []
    except (OSError, EOFError, ValueError, KeyError, TypeError) as exc:
        raise ApiError.invalid("file", f"{path} is damaged after {read} faces ({exc})") from None
    raise ApiError.invalid("file", f"{path} is cut short after {read} faces (no end line)")
