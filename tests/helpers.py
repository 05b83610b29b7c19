"""Helpers the tests share (fixtures live in the conftest files)."""

from __future__ import annotations

import base64
from pathlib import Path


def b64(path: Path) -> str:
    """A file's bytes as the base64 text the API takes."""
    return base64.b64encode(path.read_bytes()).decode("ascii")


# Source defining ``peak_kb()`` for a child Python process: its own memory's high-water mark.
# Not ``getrusage``'s ``ru_maxrss``: a child started by vfork and exec inherits the parent's
# (a long pytest run's hundreds of MB) as its own peak.
PEAK_KB_SOURCE = (
    "def peak_kb():\n"
    "    with open('/proc/self/status') as status:\n"
    "        return next(int(line.split()[1]) for line in status if line.startswith('VmHWM:'))\n"
)
