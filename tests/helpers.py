"""Helpers the tests share (fixtures live in the conftest files)."""

from __future__ import annotations

import base64
from pathlib import Path


def b64(path: Path) -> str:
    """A file's bytes as the base64 text the API takes."""
    return base64.b64encode(path.read_bytes()).decode("ascii")
