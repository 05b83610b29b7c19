"""Gallery scale: enroll throughput and the latency of each gallery call at 10k and 100k enrolled
features, in the embedded Milvus Lite and in a Milvus standalone server (started here, on this
machine), against a brute-force numpy baseline (one matrix product over all features) in the same
command. On the server, what each way of keeping replicas exact costs: what the service does
(writes wait until they are visible, reads at Bounded do not wait: "commit wait"), what it did
before (every read Strong; with the server's time tick at 50 ms instead of 200 too), and Session
(not used: it misses other replicas' writes). And a gallery exported to a file and imported back
(``python -m face_api.galleries``): faces a second each way, and the file's size.

    .venv/bin/python -m benchmarks.probes.galleries                # 10k and 100k, 20 minutes
    .venv/bin/python -m benchmarks.probes.galleries --sizes 1000   # quick
    .venv/bin/python -m benchmarks.probes.galleries --stores lite  # or server, server-tick50, ...

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

from face_api.galleries.store import READ_LEVEL, GalleryStore
from face_api.galleries.transfer import export_gallery, import_gallery
from tests.milvus_server import running_milvus

DIM = 512
ENROLL_BATCH = 1000  # faces per enroll call in the bulk phase
SINGLE_ENROLLS = 200  # one-face enroll calls timed on top of the bulk
PROBES = 100  # searches timed per size (--probes)
TOP_K = 5
TIMED = 50  # verify and delete calls timed per size
STORES = {  # --stores name: (table name, read level, writes wait, the server's time tick in ms)
    "lite": ("Milvus Lite", READ_LEVEL, True, None),
    "server": ("Milvus server, writes wait, Bounded reads (the service)", READ_LEVEL, True, None),
    "server-strong": ("Milvus server, Strong reads (before issue 35)", "Strong", False, None),
    "server-tick50": ("Milvus server, Strong reads, 50 ms time tick", "Strong", False, 50),
    "server-session": ("Milvus server, Session (not used)", "Session", False, None),
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
    with running_milvus(folder / "milvus", time_tick_ms=STORES[kind][3]) as server:
        yield server.uri


def median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1000


def run(
    uri: str,
    size: int,
    probes_count: int = PROBES,
    read_level: str = READ_LEVEL,
    commit_wait: bool = True,
) -> dict[str, float]:
    rng = np.random.default_rng(size)
    features = unit(rng.standard_normal((size, DIM)).astype(np.float32))
    store = GalleryStore(uri, "synthetic", DIM, read_level=read_level, commit_wait=commit_wait)

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
    verify_times, delete_times = [], []
    for i, feature in enumerate(singles[:TIMED]):
        t0 = time.perf_counter()
        store.verify("bench", f"single-{i}", feature)
        verify_times.append(time.perf_counter() - t0)
    for face in store.faces("bench", 0, TIMED, subject=None)[0]:
        t0 = time.perf_counter()
        store.delete_face("bench", face.face_id)
        delete_times.append(time.perf_counter() - t0)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.faces.jsonl.gz"
        t0 = time.perf_counter()
        exported = export_gallery(store, "bench", path)
        export_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        _, imported = import_gallery(store, path, "bench-copy")
        import_s = time.perf_counter() - t0
        file_mb = path.stat().st_size / 1e6
    store.client.close()
    return {
        "export_faces_per_s": exported / export_s,
        "import_faces_per_s": imported / import_s,
        "file_mb": file_mb,
        "size": size,
        "bulk_faces_per_s": size / bulk_s,
        "single_enroll_ms": median_ms(single_times),
        "search_ms": median_ms(ours),
        "search_p95_ms": sorted(ours)[int(len(ours) * 0.95)] * 1000,
        "verify_ms": median_ms(verify_times),
        "delete_ms": median_ms(delete_times),
        "numpy_ms": median_ms(base),
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
        "search p95 ms | verify median ms | delete face median ms | numpy brute force median ms "
        "| search / numpy | rank-1 | export faces/s | import faces/s | export file MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        for kind in args.stores:
            name, read_level, commit_wait, _ = STORES[kind]
            with tempfile.TemporaryDirectory() as folder, store_uri(kind, Path(folder)) as uri:
                r = run(uri, size, args.probes, read_level, commit_wait)
            print(
                f"| {r['size']:,} | {name} | {r['bulk_faces_per_s']:,.0f} | "
                f"{r['single_enroll_ms']:.1f} | "
                f"{r['search_ms']:.1f} | {r['search_p95_ms']:.1f} | {r['verify_ms']:.1f} | "
                f"{r['delete_ms']:.1f} | {r['numpy_ms']:.1f} | "
                f"{r['search_ms'] / r['numpy_ms']:.2f}x | {r['rank1']:.2f} | "
                f"{r['export_faces_per_s']:,.0f} | {r['import_faces_per_s']:,.0f} | "
                f"{r['file_mb']:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
