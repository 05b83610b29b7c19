"""End-to-end helpers: insightface's own FaceAnalysis as the reference pipeline."""

from __future__ import annotations

import pytest

from tests.paths import DEFAULT_PACK_DIR


@pytest.fixture(scope="session")
def reference():
    """insightface's FaceAnalysis on the same pack at the service's detector size (640)."""
    from insightface.app import FaceAnalysis

    analysis = FaceAnalysis(name=str(DEFAULT_PACK_DIR), providers=["CPUExecutionProvider"])
    analysis.prepare(ctx_id=-1, det_size=(640, 640))
    return analysis
