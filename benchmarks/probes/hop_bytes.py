"""How many bytes one ``/v1/feature`` request sends the runner: the runner's ``analyze`` called
with the encoded image, its query and the request's context, carried as BentoML carries a call
between services, against the letterboxed 640x640 canvas a runner used to be sent (issue 10's
one-hop change).

    .venv/bin/python -m benchmarks.probes.hop_bytes [--photos-dir tests/data]
"""

from __future__ import annotations

import argparse
import pickle
import statistics
from pathlib import Path

import numpy as np

from benchmarks.harness.photos import Photo, load_photos
from tests.paths import DATA


def hop_bytes(photos: list[Photo]) -> list[str]:
    """What one ``/v1/feature`` request sends the runner, as BentoML's client encodes the call,
    against the letterboxed canvas a runner used to be sent (pickled as BentoML pickles it)."""
    import tests.conftest  # noqa: F401 - BentoML's home, the tests' pack name
    from face_api.inference.packs import PackNotInStoreError, get_pack, import_pack
    from face_api.ops.bentoml_private import carried_call
    from face_api.ops.context import CallContext
    from face_api.ops.runner_hop import FaceQuery
    from tests.paths import DEFAULT_PACK, DEFAULT_PACK_DIR

    try:  # the runner's module looks its pack up as it is imported
        get_pack(DEFAULT_PACK)
    except PackNotInStoreError:
        import_pack(str(DEFAULT_PACK_DIR), DEFAULT_PACK)
    from runners.insightface_runner import InsightFaceRunner

    analyze = InsightFaceRunner.apis["analyze"]
    query = FaceQuery(max_faces=1)  # what /v1/feature asks
    context = CallContext(id="0" * 32, deadline_s=60.0)
    sizes = [
        carried_call(analyze, images=[("image", p.data)], query=query, request=context)[1]
        for p in photos
    ]
    canvas = len(pickle.dumps(np.zeros((1, 640, 640, 3), np.uint8), protocol=5))
    median = statistics.median(sizes)
    return [
        f"Bytes the API worker sends the runner for one `/v1/feature` request (its arguments as "
        f"BentoML's client encodes them, median over the photos): {median:,.0f}; a "
        f"letterboxed 640x640 canvas alone: {canvas:,} ({canvas / median:.0f}x more).",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--photos-dir", type=Path, default=DATA)
    args = parser.parse_args()
    print(*hop_bytes(load_photos(args.photos_dir, quick=False)["single"]))


if __name__ == "__main__":
    main()
