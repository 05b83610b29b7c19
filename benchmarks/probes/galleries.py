"""Gallery scale: enroll throughput and search latency at 10k and 100k enrolled features, in the
embedded Milvus Lite and in a Milvus standalone server (started here, on this machine) read at
the service's default consistency (Session) and at Strong, against a brute-force numpy baseline
(one matrix product over all features) in the same command.

    .venv/bin/python -m benchmarks.probes.galleries                # 10k and 100k, 15 minutes
    .venv/bin/python -m benchmarks.probes.galleries --sizes 1000   # quick
    .venv/bin/python -m benchmarks.probes.galleries --stores lite  # or server, server-strong

Features are synthetic unit vectors (512-d, like the recognizer's); probes are noisy copies of
enrolled ones, so rank-1 correctness is checked along the way.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from face_api.galleries.store import DEFAULT_CONSISTENCY, GalleryStore
from tests.milvus_server import running_milvus

DIM = 512
ENROLL_BATCH = 1000  # faces per enroll call in the bulk phase
SINGLE_ENROLLS = 200  # one-face enroll calls timed on top of the bulk
PROBES = 100  # searches timed per size (--probes)
TOP_K = 5
STORES = {  # --stores name: (table name, consistency)
    "lite": ("Milvus Lite", DEFAULT_CONSISTENCY),
    "server": (f"Milvus server, {DEFAULT_CONSISTENCY}", DEFAULT_CONSISTENCY),
    "server-strong": ("Milvus server, Strong", "Strong"),
}


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def brute_force(gallery: np.ndarray, probe: np.ndarray, k: int) -> np.ndarray:
    scores = gallery @ probe
    best = np.argpartition(-scores, k)[:k]
    return best[np.argsort(-scores[best])]


@contextlib.contextmanager
def store_uri(kind: str, folder: Path) -> Iterator[str]:
    """A fresh, empty store of ``kind``: a Milvus Lite file, or a Milvus server of its own (one
    at a time: two cannot share a host)."""
    if kind == "lite":
        yield str(folder / "bench.db")
        return
    with running_milvus(folder / "milvus") as server:
        yield server.uri


def run(
    uri: str, size: int, probes_count: int = PROBES, consistency: str = DEFAULT_CONSISTENCY
) -> dict[str, float]:
    rng = np.random.default_rng(size)
    features = unit(rng.standard_normal((size, DIM)).astype(np.float32))
    store = GalleryStore(uri, "synthetic", DIM, consistency=consistency)

    start = time.perf_counter()
    for first in range(0, size, ENROLL_BATCH):
        batch = features[first : first + ENROLL_BATCH]
        store.enroll("bench", f"subject-{first}", batch)
    bulk_s = time.perf_counter() - start

    singles = unit(rng.standard_normal((SINGLE_ENROLLS, DIM)).astype(np.float32))
    single_times = []
    for i, feature in enumerate(singles):
        t0 = time.perf_counter()
        store.enroll("bench", f"single-{i}", feature[np.newaxis])
        single_times.append(time.perf_counter() - t0)

    everything = np.concatenate([features, singles])
    picks = rng.choice(size, probes_count, replace=False)
    noise = 0.01 * rng.standard_normal((probes_count, DIM)).astype(np.float32)
    probes = unit(features[picks] + noise)
    ours, base, correct = [], [], 0
    for pick, probe in zip(picks, probes, strict=True):
        t0 = time.perf_counter()
        matches = store.search("bench", probe[np.newaxis], limit=TOP_K)[0]
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        best = brute_force(everything, probe, TOP_K)
        base.append(time.perf_counter() - t0)
        correct += int(best[0] == pick and matches[0].subject == f"subject-{pick - pick % 1000}")
    store.client.close()
    return {
        "size": size,
        "bulk_faces_per_s": size / bulk_s,
        "single_enroll_ms": statistics.median(single_times) * 1000,
        "search_ms": statistics.median(ours) * 1000,
        "search_p95_ms": sorted(ours)[int(len(ours) * 0.95)] * 1000,
        "numpy_ms": statistics.median(base) * 1000,
        "rank1": correct / probes_count,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--probes", type=int, default=PROBES)
    parser.add_argument("--stores", nargs="+", choices=list(STORES), default=list(STORES))
    args = parser.parse_args()
    print(
        "| enrolled | store | bulk enroll faces/s | one-face enroll median ms | search median ms | "
        "search p95 ms | numpy brute force median ms | search / numpy | rank-1 |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        for kind in args.stores:
            name, consistency = STORES[kind]
            with tempfile.TemporaryDirectory() as folder, store_uri(kind, Path(folder)) as uri:
                r = run(uri, size, args.probes, consistency)
            print(
                f"| {r['size']:,} | {name} | {r['bulk_faces_per_s']:,.0f} | "
                f"{r['single_enroll_ms']:.1f} | "
                f"{r['search_ms']:.1f} | {r['search_p95_ms']:.1f} | {r['numpy_ms']:.1f} | "
                f"{r['search_ms'] / r['numpy_ms']:.2f}x | {r['rank1']:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
