"""How many bytes one ``/v1/feature`` request sends the runner: its arguments as BentoML's pickle
serde encodes them (the encoded image), against the letterboxed 640x640 canvas a runner used to
be sent (issue 10's one-hop change).

    .venv/bin/python -m benchmarks.probes.hop_bytes [--photos-dir tests/data]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np

from benchmarks.harness.photos import Photo, load_photos
from tests.paths import DATA


def hop_bytes(photos: list[Photo]) -> list[str]:
    """What one ``/v1/feature`` request sends the runner, encoded as BentoML's pickle serde
    encodes a call's arguments, against the letterboxed canvas a runner used to be sent."""
    from _bentoml_impl.serde import PickleSerde

    def encoded(arguments: dict) -> int:
        return sum(len(part) for part in PickleSerde().serialize_value(arguments).data)

    sizes = [
        encoded({"images": [("image", p.data)], "max_faces": 1, "sort_type": 0, "embed": True})
        for p in photos
    ]
    canvas = encoded({"canvases": np.zeros((1, 640, 640, 3), np.uint8)})
    median = statistics.median(sizes)
    return [
        f"Bytes the API worker sends the runner for one `/v1/feature` request (its arguments as "
        f"BentoML's pickle serde encodes them, median over the photos): {median:,.0f}; a "
        f"letterboxed 640x640 canvas alone: {canvas:,} ({canvas / median:.0f}x more).",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--photos-dir", type=Path, default=DATA)
    args = parser.parse_args()
    print(*hop_bytes(load_photos(args.photos_dir, quick=False)["single"]))


if __name__ == "__main__":
    main()
