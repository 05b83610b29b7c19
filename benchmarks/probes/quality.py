"""What face quality buys, on the identity photos and five ways of ruining them.

Each of the 33 frames, clean and degraded (Gaussian blur of sigma 2 and 5 pixels, darkened to a
quarter, shrunk so that the face is 40 pixels wide, turned 40 degrees, mirrored), through the
service's pipeline in process with quality on: each probe's grade and AUTO's verdict, and its
same-person cosine against the clean gallery (the person's other clean frames, the best one).
Then the cosine per grade (it should fall as the grade falls) and the cost of the measures.

    .venv/bin/python -m benchmarks.probes.quality
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from tests.paths import DEFAULT_PACK_DIR, IDENTITIES, identity_of


def blur(sigma: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    return lambda image, face: cv2.GaussianBlur(image, (0, 0), sigma)


def darken(image: np.ndarray, face: np.ndarray) -> np.ndarray:
    return (image.astype(np.float32) * 0.25).astype(np.uint8)


def shrink(image: np.ndarray, face: np.ndarray) -> np.ndarray:
    scale = 40.0 / float(face[2] - face[0])  # the face 40 pixels wide
    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def rotate(image: np.ndarray, face: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    turn = cv2.getRotationMatrix2D((width / 2, height / 2), 40, 1.0)
    return cv2.warpAffine(image, turn, (width, height))


def mirror(image: np.ndarray, face: np.ndarray) -> np.ndarray:
    return cv2.flip(image, 1)


DEGRADATIONS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "blur sigma 2": blur(2),
    "blur sigma 5": blur(5),
    "darkened x0.25": darken,
    "face 40 px wide": shrink,
    "turned 40 degrees": rotate,
    "mirrored": mirror,
}
HEAVY = ("blur sigma 5", "darkened x0.25", "face 40 px wide")


def analyse_all(pack_dir: Path) -> tuple[dict, float]:
    """Per photo and variant (``clean`` and each degradation): (face row, measures, unit
    embedding); and the median milliseconds the measures took a face."""
    os.environ.setdefault("BENTOML_HOME", tempfile.mkdtemp(prefix="face-probe-"))
    from face_api.inference.engine import FaceEngine
    from face_api.ops.settings import Settings
    from face_api.ops.timing import Timings
    from face_api.pipeline import quality
    from face_api.pipeline.analysis import EngineBackend, FacePipeline
    from face_api.pipeline.faces import DetectSortType

    engine = FaceEngine(pack_dir, Settings(device="cpu"))
    pipeline = FacePipeline(EngineBackend(engine), 640, engine.crop_size, 40_000_000)

    def largest(image: np.ndarray):
        data = cv2.imencode(".png", image)[1].tobytes()
        work = pipeline.analyze([("image", data)], 1, DetectSortType.AREA, True, Timings(), True)
        (found,) = asyncio.run(work)
        if not len(found.faces):
            return None
        return found.faces[0], found.quality[0], found.embeddings[0]

    results: dict[str, dict[str, tuple | None]] = {}
    costs = []
    for photo in IDENTITIES:
        image = cv2.imread(str(photo))
        clean = largest(image)
        results[photo.name] = {"clean": clean}
        for name, degrade in DEGRADATIONS.items():
            results[photo.name][name] = largest(degrade(image, clean[0]))
        crop = cv2.resize(image, (112, 112))
        start = time.perf_counter()
        for _ in range(20):
            quality.measure(clean[0], crop, 1.0)
        costs.append((time.perf_counter() - start) / 20 * 1000)
    return results, statistics.median(costs)


def report(results: dict, cost_ms: float) -> list[str]:
    from face_api.http.results import quality_bars
    from face_api.ops.settings import Settings
    from face_api.pipeline.quality import QualityFilter, grade, refusals

    bars = quality_bars(Settings())
    medium, high = bars.medium, bars.high
    people = {name: identity_of(Path(name)) for name in results}

    def same_person_cosine(name: str, embedding: np.ndarray) -> float:
        others = [
            r["clean"][2] for n, r in results.items() if people[n] == people[name] and n != name
        ]
        return max(float(e @ embedding) for e in others)

    rows = ["| probe | found | high | medium | low | AUTO refuses | same-person cosine, median |"]
    rows.append("|---|---|---|---|---|---|---|")
    by_grade: dict[str, list[float]] = {"high": [], "medium": [], "low": []}
    for variant in ("clean", *DEGRADATIONS):
        grades, refused, cosines = {"high": 0, "medium": 0, "low": 0}, 0, []
        found = [(n, r[variant]) for n, r in results.items() if r[variant] is not None]
        for name, (face, measures, embedding) in found:
            verdict = grade(face, measures, medium, high)
            grades[verdict.grade.value] += 1
            refused += bool(refusals(verdict, QualityFilter.AUTO))
            cosine = same_person_cosine(name, embedding)
            cosines.append(cosine)
            if variant != "clean":
                by_grade[verdict.grade.value].append(cosine)
        rows.append(
            f"| {variant} | {len(found)}/{len(results)} | {grades['high']} | {grades['medium']} "
            f"| {grades['low']} | {refused}/{len(found)} | {statistics.median(cosines):.3f} |"
        )
    rows += ["", "| grade of a degraded probe | probes | same-person cosine, mean | median |"]
    rows.append("|---|---|---|---|")
    for name, cosines in by_grade.items():
        if cosines:
            rows.append(
                f"| {name} | {len(cosines)} | {statistics.mean(cosines):.3f} | "
                f"{statistics.median(cosines):.3f} |"
            )
    rows.append(
        f"\nThe measures of one face (pose, sharpness, brightness): {cost_ms:.3f} ms median."
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pack-dir", type=Path, default=DEFAULT_PACK_DIR)
    args = parser.parse_args()
    print("\n".join(report(*analyse_all(args.pack_dir))))


if __name__ == "__main__":
    main()
