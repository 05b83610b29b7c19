"""Model packs in the BentoML model store: import a pack folder (or fetch one by name), look one up.

    python -m face_api.inference.packs import ../shared/models/buffalo_sc_int8
    python -m face_api.inference.packs import buffalo_l    # fetched with insightface's downloader
    python -m face_api.inference.packs list

A pack is a folder of insightface ONNX files: an SCRFD detector and an ArcFace recognizer. The
store keeps the files and, in the model's metadata, each file's sha256 and the match threshold.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import bentoml
from bentoml.exceptions import NotFound

from face_api.ops import bentoml_private

# Cosine thresholds measured for recognizers we have data for (file name -> threshold, how).
KNOWN_MATCH_THRESHOLDS: dict[str, tuple[float, str]] = {
    "w600k_mbf_int8_dequant.onnx": (
        0.30,
        "midpoint between the lowest same-person cosine (0.375) and the highest different-person "
        "cosine (0.224) over all pairs of 33 webcam frames of 9 people "
        "(shared/testdata/identities)",
    ),
}
DEFAULT_MATCH_THRESHOLD = (
    0.30,
    "not measured for this recognizer: insightface's usual cosine threshold for ArcFace models "
    "trained on WebFace600K; measure it on your own data before relying on it",
)


class PackNotInStoreError(RuntimeError):
    """The configured pack is not in the model store; the message says how to import it."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def onnx_files(folder: Path) -> list[Path]:
    """A pack's ONNX files; a zip that unpacked into one subfolder (antelopev2) is looked into."""
    files = sorted(folder.glob("*.onnx"))
    if not files:
        subfolders = [p for p in folder.iterdir() if p.is_dir()]
        if len(subfolders) == 1:
            files = sorted(subfolders[0].glob("*.onnx"))
    return files


def fetch_pack(name: str, root: Path) -> Path:
    """Download a pack by name with insightface's own downloader (its model-zoo release)."""
    from insightface.utils import storage

    from face_api.ops.settings import Settings

    mirror = Settings().pack_download_url
    if mirror:
        storage.MODEL_ZOO_RELEASE_DOWNLOAD_URL = mirror.rstrip("/") + "/"
    return Path(storage.download("models", name, root=str(root)))


def names_a_path(source: str) -> bool:
    """A source with a path separator, or starting with ``.`` or ``~``, is a folder, never a pack
    name: a name only fetches ``NAME.zip`` from the model zoo (a path there makes a URL of it)."""
    return "/" in source or "\\" in source or source.startswith((".", "~"))


def pack_tag(name: str) -> str:
    return f"{name}:latest"


def get_pack(name: str) -> bentoml.Model:
    """The stored pack, or an error that says exactly how to import it."""
    try:
        return bentoml.models.get(pack_tag(name))
    except NotFound:
        store = bentoml_private.bentoml_home() / "models"
        raise PackNotInStoreError(
            f"model pack {name!r} is not in the BentoML model store ({store}). Import it with:\n"
            f"    python -m face_api.inference.packs import /path/to/{name}\n"
            f"(a folder of insightface .onnx files, e.g. ../shared/models/{name}), or set "
            f"FACE_MODEL to a pack that is there (`python -m face_api.inference.packs list`)."
        ) from None


def import_pack(
    source: str, name: str | None = None, match_threshold: float | None = None
) -> bentoml.Model:
    """Copy a pack folder (or a pack fetched by name) into the model store, checking it loads."""
    from face_api.inference.engine import FaceEngine
    from face_api.ops.settings import Settings

    folder = Path(source).expanduser()
    if not folder.is_dir() and names_a_path(source):
        raise SystemExit(
            f"no pack folder at {folder.absolute()}: give a folder of insightface .onnx files, "
            "or a pack name (buffalo_l, buffalo_sc, antelopev2) to fetch"
        )
    with tempfile.TemporaryDirectory() as download_root:
        if not folder.is_dir():
            folder = fetch_pack(source, Path(download_root))
        files = onnx_files(folder)
        if not files:
            raise SystemExit(f"{folder} holds no .onnx files: not an insightface model pack")
        pack_dir = files[0].parent
        # Load it once on CPU: a folder insightface cannot route never reaches the store.
        engine = FaceEngine(
            pack_dir, Settings(device="cpu", intra_op_threads=1, cpu_recognizer="onnxruntime")
        )
        threshold, how = KNOWN_MATCH_THRESHOLDS.get(engine.recognizer_file, DEFAULT_MATCH_THRESHOLD)
        if match_threshold is not None:
            threshold, how = match_threshold, "given when the pack was imported"
        metadata: dict[str, Any] = {
            "files": {f.name: sha256_of(f) for f in files},
            "detector": engine.detector_file,
            "recognizer": engine.recognizer_file,
            "detector_input": list(engine.detector.reference.input_shape),
            "recognizer_input_size": engine.recognizer.crop_size,
            "embedding_size": engine.recognizer.embedding_size,
            "match_threshold": threshold,
            "match_threshold_measured": how,
        }
        pack_name = name or pack_dir.name
        with bentoml.models.create(
            name=pack_name, labels={"kind": "insightface-pack"}, metadata=metadata
        ) as model:
            for f in files:
                shutil.copyfile(f, model.path_of(f.name))
    return bentoml.models.get(model.tag)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m face_api.inference.packs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    imp = commands.add_parser("import", help="import a pack folder, or fetch a pack by name")
    imp.add_argument("source", help="a folder of .onnx files, or a pack name such as buffalo_l")
    imp.add_argument("--name", help="name in the model store (default: the folder's name)")
    imp.add_argument("--match-threshold", type=float, help="cosine threshold to report")
    imp.add_argument(
        "--if-missing",
        action="store_true",
        help="do nothing when a pack of that name is already in the store",
    )
    commands.add_parser("list", help="list the packs in the model store")
    args = parser.parse_args(argv)

    if args.command == "list":
        for model in bentoml.models.list():
            if model.info.labels.get("kind") == "insightface-pack":
                print(model.tag, ", ".join(model.info.metadata.get("files", {})))
        return 0
    if args.if_missing:
        name = args.name or Path(args.source).expanduser().name
        try:
            print(f"already in the store: {get_pack(name).tag}")
            return 0
        except PackNotInStoreError:
            pass
    model = import_pack(args.source, args.name, args.match_threshold)
    print(f"imported {model.tag}: {', '.join(model.info.metadata['files'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
