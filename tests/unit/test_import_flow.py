"""Imports flow one way: the HTTP edge, then the pipeline, then inference, with galleries beside the
edge and ``ops`` under everything (docs/architecture.md, "How it works"). A lower layer importing
a higher one fails here, with the file, line and import named."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.paths import ROOT

# Each part of the code, and the other parts it may import (its own modules always).
MAY_IMPORT: dict[str, set[str]] = {
    "service": {
        "runners",
        "face_api.http",
        "face_api.galleries",
        "face_api.pipeline",
        "face_api.ops",
    },
    "runners": {"face_api.galleries", "face_api.pipeline", "face_api.inference", "face_api.ops"},
    "face_api.http": {"face_api.pipeline", "face_api.ops"},
    "face_api.galleries": {"face_api.http", "face_api.pipeline", "face_api.ops"},
    # The galleries' command, an entry point like the services: it reads the served pack's
    # embedding size from the model store.
    "face_api.galleries.__main__": {"face_api.galleries", "face_api.inference", "face_api.ops"},
    "face_api.pipeline": {"face_api.inference", "face_api.ops"},
    "face_api.inference": {"face_api.ops"},
    "face_api.ops": set(),
}


def part_of(module: str) -> str | None:
    """The part (a key of MAY_IMPORT) a dotted module belongs to; None outside our code."""
    matches = [p for p in MAY_IMPORT if module == p or module.startswith(p + ".")]
    return max(matches, key=len) if matches else None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str) -> list[tuple[int, str]]:
    """Every module an ``import`` or ``from ... import`` names, at any depth (lazy imports too);
    ``from a import b`` counts as ``a.b``, so importing a subpackage by name is seen."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def violations(module: str, source: str) -> list[str]:
    own = part_of(module)
    if own is None:
        return []
    allowed = MAY_IMPORT[own] | {own}
    wrong = []
    for line, name in imported_modules(source):
        target = part_of(name)
        if target is None or target in allowed:  # `face_api.__version__` is in no part
            continue
        wrong.append(f"{module}:{line} imports {name} ({own} may import {sorted(allowed)})")
    return wrong


def our_modules() -> list[Path]:
    return [
        ROOT / "service.py",
        *(ROOT / "runners").rglob("*.py"),
        *(ROOT / "face_api").rglob("*.py"),
    ]


def test_every_part_of_the_code_has_a_layer():
    unplaced = [module_name(p) for p in our_modules() if part_of(module_name(p)) is None]
    assert unplaced == ["face_api"], unplaced  # the root holds only ``__version__``


def test_imports_flow_one_way():
    wrong = [v for p in our_modules() for v in violations(module_name(p), p.read_text())]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("face_api.inference.engine", "from face_api.pipeline.faces import DetectSortType"),
        ("face_api.ops.settings", "def f():\n    import face_api.http.edge"),
        ("face_api.pipeline.images", "from face_api import galleries"),
        ("face_api.http.schemas", "from face_api.galleries.store import GalleryStore"),
        ("runners.insightface_runner", "import service"),
        ("face_api.http.error_responses", "from face_api.inference.engine import FaceEngine"),
    ],
)
def test_an_import_against_the_flow_is_caught(module, source):
    assert violations(module, source)


def test_imports_along_the_flow_pass():
    assert not violations(
        "face_api.http.face_endpoints", "from face_api.pipeline.faces import landmarks_of"
    )
    assert not violations("face_api.inference.engine", "from face_api import __version__")
    assert not violations("service", "from runners.gallery_service import GalleryStoreService")
