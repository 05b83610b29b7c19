"""Verify against a subject's several faces: the best score, the mean score, or the score against
their mean (centroid), which separates same from different people better on the identity photos?

Leave one out: each of the 33 frames is the probe, and each of the 9 people's other frames the
subject's enrolled faces (a frame is never compared with itself). Same-person and
different-person scores, per rule: the worst-case margin (lowest same minus highest different),
d' (the means' distance in pooled standard deviations) and the equal error rate.

    .venv/bin/python -m benchmarks.probes.verify_scores
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path

import numpy as np

from tests.paths import DEFAULT_PACK_DIR, IDENTITIES, identity_of


def embeddings(pack_dir: Path, photos: list[Path]) -> dict[Path, np.ndarray]:
    os.environ.setdefault("BENTOML_HOME", tempfile.mkdtemp(prefix="face-probe-"))
    from face_api.inference.engine import FaceEngine
    from face_api.ops.runner_hop import FaceQuery
    from face_api.ops.settings import Settings
    from face_api.pipeline.analysis import FacePipeline

    pipeline = FacePipeline.in_process(FaceEngine(pack_dir, Settings(device="cpu")))

    async def largest(photo: Path) -> np.ndarray:
        images = [("image", photo.read_bytes())]
        (found,) = await pipeline.analyze(images, FaceQuery(max_faces=1))
        return found.embeddings[0]

    return {photo: asyncio.run(largest(photo)) for photo in photos}


def rules(probe: np.ndarray, enrolled: list[np.ndarray]) -> dict[str, float]:
    scores = np.array([face @ probe for face in enrolled])
    centroid = np.mean(enrolled, axis=0)
    return {
        "best (the service's)": float(scores.max()),
        "mean score": float(scores.mean()),
        "centroid": float(centroid / np.linalg.norm(centroid) @ probe),
    }


def report(vectors: dict[Path, np.ndarray]) -> list[str]:
    people = sorted({identity_of(p) for p in vectors})
    same: dict[str, list[float]] = {}
    different: dict[str, list[float]] = {}
    for probe, vector in vectors.items():
        for person in people:
            enrolled = [v for p, v in vectors.items() if identity_of(p) == person and p != probe]
            if not enrolled:
                continue
            side = same if identity_of(probe) == person else different
            for rule, score in rules(vector, enrolled).items():
                side.setdefault(rule, []).append(score)
    lines = [
        "| rule | same-person min / mean | different-person max / mean | margin | d' | EER |",
        "|---|---|---|---|---|---|",
    ]
    for rule in same:
        s, d = np.array(same[rule]), np.array(different[rule])
        thresholds = np.linspace(-1, 1, 2001)
        far = np.array([(d >= t).mean() for t in thresholds])
        frr = np.array([(s < t).mean() for t in thresholds])
        at = int(np.argmin(np.abs(far - frr)))
        spread = np.sqrt((s.var() + d.var()) / 2)
        lines.append(
            f"| {rule} | {s.min():.3f} / {s.mean():.3f} | {d.max():.3f} / {d.mean():.3f} | "
            f"{s.min() - d.max():.3f} | {(s.mean() - d.mean()) / spread:.2f} | "
            f"{(far[at] + frr[at]) / 2:.3f} |"
        )
    lines.append(f"\n{len(s)} same-person and {len(d)} different-person comparisons.")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pack-dir", type=Path, default=DEFAULT_PACK_DIR)
    args = parser.parse_args()
    print("\n".join(report(embeddings(args.pack_dir, IDENTITIES))))


if __name__ == "__main__":
    main()
