"""Where the tests find the project, the shared model packs and the photos."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
MODELS = SHARED / "models"
DEFAULT_PACK = "buffalo_sc_int8"
DEFAULT_PACK_DIR = MODELS / DEFAULT_PACK
CROWD = sorted((SHARED / "testdata" / "crowd").glob("*.jpg"))
IDENTITIES = sorted((SHARED / "testdata" / "identities").glob("*.jpg"))


def identity_of(photo: Path) -> str:
    return photo.stem.split("_")[0]
