"""The model pack a benchmark serves, in BentoML's model store."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from tests.paths import DEFAULT_PACK_DIR


def pack_in_store(pack_dir: Path = DEFAULT_PACK_DIR) -> str:
    """The name of ``pack_dir``'s pack, imported (once) into the run's BentoML home: a new one
    of its own unless ``BENTOML_HOME`` is set. Called before BentoML is imported."""
    os.environ.setdefault("BENTOML_HOME", tempfile.mkdtemp(prefix="face-bench-"))
    os.environ["BENTOML_DO_NOT_TRACK"] = "True"
    from face_api.inference.packs import PackNotInStoreError, get_pack, import_pack

    try:
        get_pack(pack_dir.name)
    except PackNotInStoreError:
        import_pack(str(pack_dir), pack_dir.name)
    return pack_dir.name
