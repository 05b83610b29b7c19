"""End-to-end fixtures: the `e2e` mark on every test here, the tests' pack in the model store, and
insightface's own FaceAnalysis as the reference pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.paths import DEFAULT_PACK_DIR

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/e2e `e2e` (so `-m "not e2e"` leaves them out). The hook sees the
    whole session's items, so only this folder's are marked; it runs before `-m` deselects."""
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session", autouse=True)
def _pack_in_store(imported_pack: str) -> None:
    """Every end-to-end test may start a server (`tests.server.start_server`), which serves the
    tests' pack from the session's model store."""


@pytest.fixture(scope="session")
def reference():
    """insightface's FaceAnalysis on the same pack at the service's detector size (640)."""
    from insightface.app import FaceAnalysis

    analysis = FaceAnalysis(name=str(DEFAULT_PACK_DIR), providers=["CPUExecutionProvider"])
    analysis.prepare(ctx_id=-1, det_size=(640, 640))
    return analysis
