"""Where the tests find the project, the photos and the model pack they serve.

The photos live in the repository (tests/data). The pack is the workspace's
``../shared/models/buffalo_sc_int8`` where that folder lies beside the checkout; on a fresh
clone it is insightface's ``buffalo_sc``, the pack ``./scripts/serve.sh`` fetches there (from
``FACE_PACK_DOWNLOAD_URL`` when set), downloaded once into ``build/packs``.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
CROWD = sorted((DATA / "crowd").glob("*.jpg"))
IDENTITIES = sorted((DATA / "identities").glob("*.jpg"))
MODELS = ROOT.parent / "shared" / "models"  # the workspace's packs, absent on a fresh clone
WORKSPACE_PACK = "buffalo_sc_int8"
if (MODELS / WORKSPACE_PACK).is_dir():
    DEFAULT_PACK, DEFAULT_PACK_DIR = WORKSPACE_PACK, MODELS / WORKSPACE_PACK
else:
    DEFAULT_PACK = "buffalo_sc"
    DEFAULT_PACK_DIR = ROOT / "build" / "packs" / "models" / DEFAULT_PACK
# The recognizer whose numbers some tests check (the match threshold measured on the identities).
MEASURED_RECOGNIZER = "w600k_mbf_int8_dequant.onnx"


def identity_of(photo: Path) -> str:
    return photo.stem.split("_")[0]


def needs_workspace_pack(name: str) -> str | None:
    """Why a test of the workspace's pack ``name`` cannot run here, or None when it can."""
    if (MODELS / name).is_dir():
        return None
    return f"needs the workspace's pack {name} (../shared/models/{name}), absent on a fresh clone"
