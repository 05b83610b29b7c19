"""Face quality against its outcome: will the recognizer still know the face?

Each of the 33 identity frames, clean and ruined 51 ways (``degradations.py``: compression, motion
blur, defocus, noise, low light, overexposure, low contrast, shrinking, occlusion and
combinations, mild to severe), through the service's pipeline in process with quality on. The
ground truth of a face: the cosine of its embedding to the same frame's clean embedding (below
0.5 it would not match its owner; from 0.7 it still would), and to the person's other clean
frames (it matches its owner at the pack's threshold). Then per kind and level: the cosines, the
grades and what AUTO enrolls; the refuse and keep rates of the default filter, held out by person
and by kind of degradation; each measure's ROC AUC; and the cost of quality per face.

    .venv/bin/python -m benchmarks.probes.quality                 # the tables
    .venv/bin/python -m benchmarks.probes.quality --fit           # fit recognizability again
    .venv/bin/python -m benchmarks.probes.quality --pack-dir ../shared/models/buffalo_m_int8
    .venv/bin/python -m benchmarks.probes.quality --quick         # 9 frames, 12 degradations
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pickle
import statistics
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from benchmarks.probes.degradations import DEGRADATIONS, Degradation
from tests.paths import CROWD, DEFAULT_PACK_DIR, IDENTITIES, identity_of

BAD, GOOD = 0.5, 0.7  # the cosine to the clean face below which it is lost, from which it is kept
QUICK = (
    "jpeg q 3",
    "jpeg q 15",
    "motion blur 25 px horizontal",
    "motion blur 9 px",
    "defocus radius 6",
    "noise sigma 40",
    "low light x0.15",
    "overexposure x3",
    "down-up face 16 px",
    "small face 20 px",
    "occlusion eyes",
    "combined motion 15 px + noise 20",
)


@dataclass
class Face:
    """One probe: the largest face of a clean or degraded frame (None where none was found)."""

    photo: str
    person: str
    kind: str
    level: str
    severity: int
    row: np.ndarray | None = None  # box, score, landmarks
    measures: np.ndarray | None = None  # quality.MEASURES
    embedding: np.ndarray | None = None
    cos_clean: float = float("nan")  # to the same frame's clean face
    cos_owner: float = float("nan")  # to the person's other clean frames, the best
    cos_stranger: float = float("nan")  # to every other person's clean frames, the best
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def found(self) -> bool:
        return self.row is not None

    @property
    def name(self) -> str:
        return f"{self.kind} {self.level}".strip()


@dataclass
class Run:
    faces: list[Face]
    norm_reference: float
    match_threshold: float
    recognizer: str
    cost: dict[str, float]


def collect(pack_dir: Path, quick: bool) -> Run:
    """Every frame, clean and degraded, through the pipeline in process with quality on."""
    os.environ.setdefault("BENTOML_HOME", tempfile.mkdtemp(prefix="face-probe-"))
    from face_api.inference.engine import FaceEngine
    from face_api.inference.packs import DEFAULT_MATCH_THRESHOLD, KNOWN_MATCH_THRESHOLDS
    from face_api.ops.runner_hop import FaceQuery
    from face_api.ops.settings import Settings
    from face_api.pipeline.analysis import FacePipeline

    engine = FaceEngine(pack_dir, Settings(device="cpu"))
    pipeline = FacePipeline.in_process(engine)

    def analyse(image: np.ndarray, faces: int, embed: bool, quality: bool) -> Any:
        data = cv2.imencode(".png", image)[1].tobytes()
        work = pipeline.analyze(
            [("image", data)], FaceQuery(max_faces=faces, embed=embed, quality=quality)
        )
        return asyncio.run(work)[0]

    photos = IDENTITIES[::4] if quick else IDENTITIES
    degradations = [d for d in DEGRADATIONS if not quick or d.name in QUICK]
    faces: list[Face] = []
    for photo in photos:
        image = cv2.imread(str(photo))
        clean_row: np.ndarray | None = None
        for degradation in [None, *degradations]:
            if degradation is None:
                face, ruined = Face(photo.name, identity_of(photo), "clean", "", 0), image
            else:
                face = Face(
                    photo.name,
                    identity_of(photo),
                    degradation.kind,
                    degradation.level,
                    degradation.severity,
                )
                ruined = degradation.apply(image, clean_row, degradation.rng(photo.name))
            found = analyse(ruined, 1, True, True)
            if len(found.faces):
                face.row, face.measures = found.faces[0], found.quality[0]
                face.embedding = found.embeddings[0]
            if degradation is None:
                clean_row = face.row
            faces.append(face)
    _ground_truth(faces)
    threshold = KNOWN_MATCH_THRESHOLDS.get(engine.recognizer_file, DEFAULT_MATCH_THRESHOLD)[0]
    return Run(
        faces,
        float(pipeline.norm_reference),
        threshold,
        engine.recognizer_file,
        _cost(analyse),
    )


def _ground_truth(faces: list[Face]) -> None:
    clean = {f.photo: f for f in faces if f.kind == "clean"}
    for face in faces:
        if not face.found:
            continue
        face.cos_clean = float(face.embedding @ clean[face.photo].embedding)
        itself = clean[face.photo]
        owner = [c.embedding for c in clean.values() if c.person == face.person and c is not itself]
        strangers = [c.embedding for c in clean.values() if c.person != face.person]
        face.cos_owner = max((float(face.embedding @ e) for e in owner), default=float("nan"))
        face.cos_stranger = max(float(face.embedding @ e) for e in strangers)


def _cost(analyse: Any) -> dict[str, float]:
    """Milliseconds a request takes with and without quality, in turns, in this run (the best
    of several rounds: other work on the machine only adds): one face (an identity frame) and the
    largest crowd photo (every face up to 128); and the measures of one face alone."""
    from face_api.pipeline.faces import align_faces
    from face_api.pipeline.quality import measure

    crowd = max(CROWD, key=lambda p: cv2.imread(str(p)).size)
    images = {"one face": cv2.imread(str(IDENTITIES[0])), "crowd": cv2.imread(str(crowd))}
    modes = {
        "detect": (False, False),
        "detect + quality": (False, True),
        "embed": (True, False),
        "embed + quality": (True, True),
    }
    out: dict[str, float] = {}
    for name, image in images.items():
        limit = 1 if name == "one face" else 128
        found = analyse(image, limit, True, False)
        times: dict[str, list[float]] = {m: [] for m in modes}
        for _ in range(15 if name == "one face" else 5):
            for mode, (embed, quality) in modes.items():
                start = time.perf_counter()
                analyse(image, limit, embed, quality)
                times[mode].append((time.perf_counter() - start) * 1000)
        out[f"{name} faces"] = len(found.faces)
        for mode, values in times.items():
            out[f"{name} {mode}"] = min(values)
        if name == "crowd":
            crops = align_faces(image, found.faces, 112)
            start = time.perf_counter()
            for row, crop in zip(found.faces, crops, strict=True):
                measure(row, crop, 23.0, 23.2)
            out["measures a face"] = (time.perf_counter() - start) * 1000 / len(crops)
    return out


# -- fitting ---------------------------------------------------------------------------------------
def features(faces: Iterable[Face], norm_reference: float) -> np.ndarray:
    """The recognizability line's inputs: 1, ln(norm / reference), the turn, the motion blur
    beyond its knee."""
    from face_api.pipeline.quality import MEASURES, RECOGNIZABILITY

    col = {name: i for i, name in enumerate(MEASURES)}
    rows = []
    for f in faces:
        m = f.measures
        turn = max(abs(float(m[col["yaw"]])), abs(float(m[col["pitch"]])))
        ratio = float(m[col["embedding_norm"]]) / norm_reference
        smear = max(0.0, float(m[col["motion_blur"]]) - RECOGNIZABILITY.motion_blur_knee)
        rows.append([1.0, np.log(ratio), turn, smear])
    return np.array(rows)


def rescore(run: Run) -> None:
    """Each face's pose and recognizability from its kept row and measures by today's code (a
    cached run was measured with the code of its day)."""
    from face_api.pipeline.quality import MEASURES, RECOGNIZABILITY, pose

    col = {name: i for i, name in enumerate(MEASURES)}
    for f in run.faces:
        if f.found:
            m = f.measures
            m[[col["yaw"], col["pitch"], col["roll"]]] = pose(f.row[5:15].reshape(5, 2))
            turn = max(abs(float(m[col["yaw"]])), abs(float(m[col["pitch"]])))
            ratio = float(m[col["embedding_norm"]]) / run.norm_reference
            m[col["recognizability"]] = RECOGNIZABILITY(ratio, turn, float(m[col["motion_blur"]]))


def fit_line(faces: list[Face], norm_reference: float) -> np.ndarray:
    """Least squares of the cosine to the clean face (clipped to 0-1) on the features."""
    x = features(faces, norm_reference)
    y = np.clip([f.cos_clean for f in faces], 0.0, 1.0)
    return np.linalg.lstsq(x, y, rcond=None)[0]


def fit_report(run: Run) -> list[str]:
    """The line fitted on every face, and the rule held out: fitted without one person (or one
    kind of degradation), its bar chosen on the rest, judged on the one left out (with AUTO's
    other bars: size, detector score, pose)."""
    from face_api.ops.settings import Settings
    from face_api.pipeline.quality import MEASURES, Bars, QualityFilter, refusals

    settings = Settings()
    bars = Bars.from_settings(settings)
    column = MEASURES.index("recognizability")
    found = [f for f in run.faces if f.found]
    # Whether each face clears AUTO's bars other than recognizability.
    others: dict[int, bool] = {}
    for f in found:
        readable = f.measures.copy()
        readable[column] = 1.0
        others[id(f)] = not refusals(bars.judge(f.row, readable), QualityFilter.AUTO)
    weights = fit_line(found, run.norm_reference)
    rows = [
        "Recognizability fitted on every face: "
        f"{weights[0]:.4f} + {weights[1]:.4f} ln(norm/ref) + {weights[2]:.5f} turn "
        f"+ {weights[3]:.4f} max(0, motion blur - knee)",
        "",
        "| held out | bar chosen | refuses below 0.5 | keeps from 0.7 | clean frames enrolled |",
        "|---|---|---|---|---|",
    ]
    for label, group in (("by person", lambda f: f.person), ("by kind", lambda f: f.kind)):
        kept: dict[int, bool] = {}
        chosen = []
        for held in sorted({group(f) for f in found} - {"clean"}):
            train = [f for f in found if group(f) != held]
            line = fit_line(train, run.norm_reference)
            bar = _choose_bar(train, line, run.norm_reference, others)
            chosen.append(bar)
            test = [f for f in found if group(f) == held]
            for f, value in zip(test, features(test, run.norm_reference) @ line, strict=True):
                kept[id(f)] = value >= bar and others[id(f)]
        scored = [f for f in found if id(f) in kept]
        bad = [kept[id(f)] for f in scored if f.cos_clean < BAD]
        good = [kept[id(f)] for f in scored if f.cos_clean >= GOOD]
        clean = [kept[id(f)] for f in scored if f.kind == "clean"]
        rows.append(
            f"| {label} | {min(chosen):.2f}-{max(chosen):.2f} | {1 - np.mean(bad):.3f} "
            f"| {np.mean(good):.3f} "
            f"| {f'{sum(clean)}/{len(clean)}' if clean else 'all (never held out)'} |"
        )
    rows += [
        "",
        "| recognizability bar, with AUTO's others | refuses below 0.5 | keeps from 0.7 "
        "| clean enrolled |",
        "|---|---|---|---|",
    ]
    values = np.array([float(f.measures[column]) for f in found])
    cos = np.array([f.cos_clean for f in found])
    clean = np.array([f.kind == "clean" for f in found])
    other = np.array([others[id(f)] for f in found])
    for bar in sorted({0.60, 0.62, 0.64, 0.65, settings.quality_recognizability[0], 0.66, 0.68}):
        keep = (values >= bar) & other
        rows.append(
            f"| {bar:.3f} | {np.mean(~keep[cos < BAD]):.3f} | {np.mean(keep[cos >= GOOD]):.3f} "
            f"| {keep[clean].sum()}/{clean.sum()} |"
        )
    return rows


def _choose_bar(
    faces: list[Face], line: np.ndarray, norm_reference: float, others: dict[int, bool]
) -> float:
    """The bar that refuses the most faces below 0.5 while it keeps as many from 0.7, every
    clean frame enrolled: the best of the smaller of the two rates."""
    values = features(faces, norm_reference) @ line
    cos = np.array([f.cos_clean for f in faces])
    other = np.array([others[id(f)] for f in faces])
    clean_least = min(v for v, f in zip(values, faces, strict=True) if f.kind == "clean")
    best, best_rate = 0.0, -1.0
    for bar in np.arange(0.40, 0.90, 0.002):
        if bar > clean_least:
            break
        keep = (values >= bar) & other
        rate = min(np.mean(~keep[cos < BAD]), np.mean(keep[cos >= GOOD]))
        if rate > best_rate:
            best, best_rate = float(bar), rate
    return best


# -- the tables ------------------------------------------------------------------------------------
def roc_auc(scores: Iterable[float], labels: Iterable[bool]) -> float:
    """The chance that a positive scores above a negative (ties count half)."""
    s, y = np.asarray(list(scores), float), np.asarray(list(labels), bool)
    pos, neg = s[y], s[~y]
    if not len(pos) or not len(neg):
        return float("nan")
    above = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(above / (len(pos) * len(neg)))


def report(run: Run) -> list[str]:
    from face_api.ops.settings import Settings
    from face_api.pipeline.quality import MEASURES, Bars, QualityFilter, refusals

    bars = Bars.from_settings(Settings())
    col = {name: i for i, name in enumerate(MEASURES)}
    found = [f for f in run.faces if f.found]
    verdicts = {id(f): bars.judge(f.row, f.measures) for f in found}
    enrolled = {id(f): not refusals(verdicts[id(f)], QualityFilter.AUTO) for f in found}
    rows = [
        f"Recognizer {run.recognizer}: norm of the reference face {run.norm_reference:.2f}, "
        f"match threshold {run.match_threshold:.2f}.",
        "",
        "| probe | found | cosine to the clean face, median (min) | to the owner's other frames, "
        "median | high | medium | low | AUTO enrolls |",
        "|---|---|---|---|---|---|---|---|",
    ]
    names = list(dict.fromkeys(f.name for f in run.faces))
    for name in names:
        group = [f for f in run.faces if f.name == name]
        hit = [f for f in group if f.found]
        if not hit:
            rows.append(f"| {name} | 0/{len(group)} | | | | | | |")
            continue
        grades = [verdicts[id(f)].grade.value for f in hit]
        cos = [f.cos_clean for f in hit]
        rows.append(
            f"| {name} | {len(hit)}/{len(group)} | {statistics.median(cos):.2f} ({min(cos):.2f}) "
            f"| {statistics.median(f.cos_owner for f in hit):.2f} | {grades.count('high')} "
            f"| {grades.count('medium')} | {grades.count('low')} "
            f"| {sum(enrolled[id(f)] for f in hit)}/{len(hit)} |"
        )
    bad = [f for f in found if f.cos_clean < BAD]
    good = [f for f in found if f.cos_clean >= GOOD]
    clean = [f for f in found if f.kind == "clean"]
    high_bad = [f for f in bad if verdicts[id(f)].grade.value == "high"]
    rows += [
        "",
        "| AUTO, every probe found | faces | refused | enrolled |",
        "|---|---|---|---|",
        f"| cosine to the clean face below {BAD} | {len(bad)} | "
        f"{sum(not enrolled[id(f)] for f in bad) / len(bad):.1%} "
        f"| {sum(enrolled[id(f)] for f in bad)} |",
        f"| {BAD} to {GOOD} | {len(found) - len(bad) - len(good)} | | |",
        f"| {GOOD} or more | {len(good)} | {sum(not enrolled[id(f)] for f in good)} | "
        f"{sum(enrolled[id(f)] for f in good) / len(good):.1%} |",
        f"| clean frames | {len(clean)} | {sum(not enrolled[id(f)] for f in clean)} | "
        f"{sum(enrolled[id(f)] for f in clean)}/{len(clean)} |",
        "",
        f"Graded high below {BAD}: {len(high_bad)}"
        + (f" ({', '.join(f'{f.photo} {f.name}' for f in high_bad)})" if high_bad else "")
        + f". Highest cosine to a stranger of an enrolled probe: "
        f"{max(f.cos_stranger for f in found if enrolled[id(f)]):.2f}.",
        "",
        "| score | ROC AUC: keeps 0.7 to the clean face (against below 0.5) | matches its owner "
        f"at {run.match_threshold:.2f} |",
        "|---|---|---|",
    ]
    owner = [f for f in found if not np.isnan(f.cos_owner)]
    scores = {
        "recognizability": lambda f: float(f.measures[col["recognizability"]]),
        "embedding norm": lambda f: float(f.measures[col["embedding_norm"]]),
        "sharpness": lambda f: float(f.measures[col["sharpness"]]),
        "brightness": lambda f: float(f.measures[col["brightness"]]),
        "motion blur (less is better)": lambda f: -float(f.measures[col["motion_blur"]]),
        "detector score": lambda f: float(f.row[4]),
        "face size": lambda f: float(min(f.row[2] - f.row[0], f.row[3] - f.row[1])),
    }
    for label, score in scores.items():
        split = bad + good
        kept = roc_auc(map(score, split), (f.cos_clean >= GOOD for f in split))
        matched = roc_auc(map(score, owner), (f.cos_owner >= run.match_threshold for f in owner))
        rows.append(f"| {label} | {kept:.3f} | {matched:.3f} |")
    cost = run.cost
    rows += [
        "",
        "| request | faces | detect | detect + quality | embeddings | embeddings + quality |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("one face", "crowd"):
        rows.append(
            f"| {name} | {int(cost[f'{name} faces'])} | {cost[f'{name} detect']:.1f} ms | "
            f"{cost[f'{name} detect + quality']:.1f} ms | {cost[f'{name} embed']:.1f} ms | "
            f"{cost[f'{name} embed + quality']:.1f} ms |"
        )
    faces = cost["crowd faces"]
    rows.append(
        f"\nQuality per face: {cost['measures a face']:.2f} ms of measures (pose, sharpness, "
        f"brightness, motion blur, recognizability) where the face is embedded anyway; "
        f"{(cost['crowd detect + quality'] - cost['crowd detect']) / faces:.2f} ms on /v1/detect, "
        f"which embeds each face for it (the crowd photo: "
        f"{cost['crowd detect + quality'] / cost['crowd detect']:.1f}x the detection alone)."
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pack-dir", type=Path, default=DEFAULT_PACK_DIR)
    parser.add_argument("--quick", action="store_true", help="9 frames, 12 degradations")
    parser.add_argument("--fit", action="store_true", help="fit recognizability, held out too")
    parser.add_argument("--cache", type=Path, help="keep the probes here, reuse them if there")
    args = parser.parse_args()
    if args.cache and args.cache.exists():
        run = pickle.loads(args.cache.read_bytes())
        rescore(run)
    else:
        run = collect(args.pack_dir, args.quick)
        if args.cache:
            args.cache.write_bytes(pickle.dumps(run))
    if args.fit:
        print("\n".join(fit_report(run)) + "\n")
    print("\n".join(report(run)))


if __name__ == "__main__":
    main()


__all__ = ["DEGRADATIONS", "Degradation", "collect", "report"]
