"""Galleries to and from files: back up a gallery, restore it, or move it to another store.

    python -m face_api.galleries list
    python -m face_api.galleries export GALLERY FILE        # or: export --all FOLDER
    python -m face_api.galleries import FILE [FILE ...] [--as NAME] [--replace]

The store is the one the service's settings name: ``FACE_GALLERY_URI`` (and
``FACE_GALLERY_TOKEN``) for a Milvus server or cluster, else the embedded Milvus Lite in
``FACE_GALLERY_DIR``. Milvus Lite is one process's database: stop the server that uses the folder
first (this refuses while one runs). A Milvus server is exported from and imported into while its
replicas serve. An import takes galleries of the pack the deployment serves (``FACE_MODEL``, at
the embedding size its model store records) only, holds every face to enroll's rules, keeps every
face id, and replaces an existing gallery only with ``--replace``. Whatever it writes is its
user's only (files ``0600``, folders ``0700``); every failure is one line on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pymilvus import MilvusException

from face_api.galleries import folder
from face_api.galleries.folder import PRIVATE
from face_api.galleries.store import GalleryStore
from face_api.galleries.transfer import SUFFIX, export_gallery, import_gallery, read_header
from face_api.inference.packs import PackNotInStoreError, get_pack
from face_api.ops.errors import ApiError
from face_api.ops.settings import Settings, get_settings


def open_store(settings: Settings, pack: str, dimension: int) -> GalleryStore:
    return GalleryStore(
        settings.gallery_store_uri(),
        pack,
        dimension,
        settings.load_gallery_token(),
        connect_timeout_s=settings.request_timeout_s,
        metadata_max_bytes=settings.gallery_metadata_max_bytes,
        index=settings.gallery_vector_index(),  # what an import makes on a server
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m face_api.galleries",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="every gallery: its pack, embedding size and faces")
    out = commands.add_parser("export", help="write a gallery (or every one) to a file")
    out.add_argument("gallery", nargs="?", help="the gallery to export")
    out.add_argument("file", nargs="?", type=Path, help=f"the file to write (*{SUFFIX})")
    out.add_argument(
        "--all", type=Path, metavar="FOLDER", help=f"every gallery, FOLDER/NAME{SUFFIX}"
    )
    into = commands.add_parser("import", help="read galleries from files")
    into.add_argument("files", nargs="+", type=Path)
    into.add_argument("--as", dest="name", help="the gallery's name here (one file only)")
    into.add_argument("--replace", action="store_true", help="replace a gallery of that name")
    args = parser.parse_args(argv)
    if args.command == "export" and (args.all is None) == (
        args.gallery is None or args.file is None
    ):
        parser.error("export takes GALLERY FILE, or --all FOLDER")
    if args.command == "import" and args.name and len(args.files) > 1:
        parser.error("--as names one gallery: give one file")

    os.umask(PRIVATE)  # what this command creates (Milvus Lite's files too) is its user's only
    claim = None
    try:
        settings = get_settings()
        if not settings.gallery_uri:  # Milvus Lite: the folder is this process's while it works
            claim = folder.claim(settings.gallery_dir, wait_s=0)
        if args.command == "import":
            for path in args.files:
                header = read_header(path)
                if header["pack"] != settings.model:
                    raise ApiError.invalid(
                        "file",
                        f"{path} holds a gallery of model pack {header['pack']!r}; this "
                        f"deployment serves {settings.model!r} (FACE_MODEL): features of "
                        "different models are never mixed",
                    )
                store = open_store(settings, settings.model, served_dimension(settings))
                name, faces = import_gallery(store, path, args.name, args.replace)
                print(f"imported {name}: {faces} faces from {path}")
            return 0
        store = open_store(settings, settings.model, 0)
        if args.command == "list":
            for info in store.galleries():
                print(f"{info.name}\t{info.pack}\t{info.dimension}\t{info.faces}")
            return 0
        targets = (
            [(args.gallery, args.file)]
            if args.all is None
            else [(g.name, args.all / f"{g.name}{SUFFIX}") for g in store.galleries()]
        )
        if args.all is not None:
            args.all.mkdir(mode=0o700, parents=True, exist_ok=True)
        for name, path in targets:
            print(f"exported {name}: {export_gallery(store, name, path)} faces to {path}")
        return 0
    except (ApiError, MilvusException, folder.GalleryFolderInUseError, PackNotInStoreError) as exc:
        message = exc.message if isinstance(exc, ApiError | MilvusException) else str(exc)
        print(f"error: {_one_line(message)}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:  # a file or folder that cannot be read or written
        print(f"error: {_one_line(str(exc))}", file=sys.stderr)
        return 1
    finally:
        if claim is not None:
            claim.close()


def served_dimension(settings: Settings) -> int:
    """The served pack's embedding size, as its import into the model store recorded it."""
    return int(get_pack(settings.model).info.metadata["embedding_size"])


def _one_line(text: str) -> str:
    """``text`` with its line breaks and other control characters escaped: one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


if __name__ == "__main__":
    sys.exit(main())
