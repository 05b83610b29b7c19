"""Galleries at a million faces on a Milvus server (issue 35): search latency through the real
service at 1 and 8 clients while enrolls go on, rank-1 recall against exact search, enroll and
delete latency, index build time and the server's memory, for an index and an alternative.

A Milvus 2.3.5 standalone server (the `milvus` package, ``tests/milvus_server.py``) keeps its data
in ``--data``, so the steps can run one at a time, each holding the host's Milvus lock only while
it runs (other test runs wait on it):

    .venv/bin/python -m benchmarks.probes.galleries_scale build --faces 1000000 --data /var/tmp/g
    .venv/bin/python -m benchmarks.probes.galleries_scale measure --faces 1000000 --data /var/tmp/g
    .venv/bin/python -m benchmarks.probes.galleries_scale merge --data /var/tmp/g  # built before
    .venv/bin/python -m benchmarks.probes.galleries_scale reindex --index IVF_FLAT --data ...
    .venv/bin/python -m benchmarks.probes.galleries_scale measure --index IVF_FLAT --data ...
    .venv/bin/python -m benchmarks.probes.galleries_scale build --shape isotropic ...  # and so on

``build`` imports the faces through the store's import (``python -m face_api.galleries import``'s
path, a batch of 1,000 at a time), merges its segments up to the server's segment size
(``SEGMENT_MAX_MB``), then times the index's build to the last row, searching and enrolling
meanwhile (neither waits for it). ``merge`` does the merging for a gallery built without it.
``measure`` checks each search's best face against exact search (numpy, every face) for probes of
enrolled identities and for strangers, then starts a real ``bentoml serve`` on the server and
sends ``POST /v1/galleries/{gallery}/search`` with a ``feature`` from 1 and from 8 clients while
another client enrolls one face after another, then times deletes. ``reindex`` gives the gallery
another index (released meanwhile: a benchmark's step, not something the service does).

Faces are synthetic, regenerated from a seed at every step (nothing to store):

- ``face``: shaped like face embeddings. Identities' centres lie near a 32-d subspace of the 512-d
  sphere (90% of their energy in it: an intrinsic dimension in the tens, as published estimates
  for ArcFace-type features say), five photos each, every photo its identity's centre moved at
  cosine 0.71-0.89 (so two photos of one person are at about 0.5-0.8) along directions shared by
  everyone (a 16-d "pose and light" subspace, half their energy) and random ones. Probes: a new
  photo of an enrolled identity; strangers: a photo of an identity never enrolled.
- ``face-loose``: the same with half the centres' energy in the subspace: harder for a graph
  index (weaker structure, and the shared directions draw neighbours across identities).
- ``isotropic``: uniform random unit vectors, probes and strangers too: no structure at all, the
  worst case for graph indexes (nothing near any probe; the exact best barely beats the next).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import psutil
from pymilvus import MilvusException

from benchmarks.harness.keepalive import KeepAliveClient
from benchmarks.harness.model_store import pack_in_store
from face_api.galleries.store import GalleryStore
from face_api.ops.settings import GALLERY_INDEXES, GalleryIndex
from face_api.pipeline.features import encode_feature
from tests.milvus_server import MilvusServer
from tests.paths import DEFAULT_PACK
from tests.server import API_KEY, RunningServer, cpu_seconds, free_port, service_processes

DIM = 512
PHOTOS = 5  # per identity
BATCH = 1_000  # faces per import call, as the import command sends them
PROBES = 1_000  # enrolled identities' probes, and as many strangers
CLIENTS = (1, 8)
SEARCHES = 3_000  # per client count
TIMED_DELETES = 100
GALLERY = "scale"
# The server's largest segment (Milvus's `dataCoord.segment.maxSize`, 512 MB by default): a
# search runs the index of every segment, so fewer, larger segments cost less CPU a search
# (benchmarks/README.md, "Galleries at a million faces"; docs/galleries.md says so for servers).
SEGMENT_MAX_MB = 4096


# -- synthetic faces ------------------------------------------------------------------------------
def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


@dataclass(frozen=True)
class Shape:
    """How a gallery's faces are drawn (see the module's docstring)."""

    name: str
    structured: bool = True
    intrinsic: int = 32  # the identities' subspace
    share: float = 0.9  # of a centre's energy in it
    nuisance: int = 16  # directions every identity's photos vary along
    nuisance_share: float = 0.5

    def bases(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(1)
        q, _ = np.linalg.qr(rng.standard_normal((DIM, self.intrinsic + self.nuisance)))
        return q[:, : self.intrinsic].T.astype(np.float32), q[:, self.intrinsic :].T.astype(
            np.float32
        )

    def centres(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if not self.structured:
            return unit(rng.standard_normal((n, DIM)))
        basis, _ = self.bases()
        near = unit(rng.standard_normal((n, self.intrinsic)).astype(np.float32) @ basis)
        anywhere = unit(rng.standard_normal((n, DIM)))
        return unit(np.sqrt(self.share) * near + np.sqrt(1 - self.share) * anywhere)

    def photos(self, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
        """One photo of each identity (a row of ``centres``)."""
        if not self.structured:
            return unit(rng.standard_normal(centres.shape))
        _, shared = self.bases()
        along = unit(rng.standard_normal((len(centres), self.nuisance)).astype(np.float32) @ shared)
        away = unit(
            np.sqrt(self.nuisance_share) * along
            + np.sqrt(1 - self.nuisance_share) * unit(rng.standard_normal(centres.shape))
        )
        away = unit(away - (away * centres).sum(1, keepdims=True) * centres)
        kept = rng.uniform(np.sqrt(0.5), np.sqrt(0.8), (len(centres), 1)).astype(np.float32)
        return unit(kept * centres + np.sqrt(1 - kept**2) * away)


SHAPES = {
    "face": Shape("face"),
    "face-loose": Shape("face-loose", share=0.5),
    "isotropic": Shape("isotropic", structured=False),
}


@dataclass
class Faces:
    """A gallery of ``n`` faces (identity ``i``'s photos are rows ``i``, ``i + n/5``, ...),
    probes of enrolled identities with their identity, strangers, and faces to enroll."""

    vectors: np.ndarray
    identities: int
    probes: np.ndarray
    probe_identities: np.ndarray
    strangers: np.ndarray
    newcomers: np.ndarray


def draw(shape: Shape, faces: int, seed: int = 7) -> Faces:
    rng = np.random.default_rng(seed)
    identities = faces // PHOTOS
    centres = shape.centres(rng, identities)
    vectors = np.concatenate([shape.photos(rng, centres) for _ in range(PHOTOS)])
    picked = rng.choice(identities, PROBES, replace=False)
    probes = shape.photos(rng, centres[picked])
    strangers = shape.photos(rng, shape.centres(rng, PROBES))
    newcomers = shape.photos(rng, shape.centres(rng, 5_000))
    return Faces(vectors, identities, probes, picked, strangers, newcomers)


def face_id(row: int) -> str:
    return f"{row:032x}"


def exact_best(vectors: np.ndarray, probes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each probe's best row and its score, over every face (numpy, in chunks)."""
    best = np.full(len(probes), -1)
    score = np.full(len(probes), -2.0, dtype=np.float32)
    for first in range(0, len(vectors), 100_000):
        scores = probes @ vectors[first : first + 100_000].T
        rows = scores.argmax(1)
        top = scores[np.arange(len(probes)), rows]
        better = top > score
        best[better], score[better] = rows[better] + first, top[better]
    return best, score


# -- the server -----------------------------------------------------------------------------------
@contextlib.contextmanager
def milvus(data: Path) -> Iterator[MilvusServer]:
    """The server on ``data`` (kept between steps), holding the host's lock while it runs."""
    server = MilvusServer(
        data / "milvus", free_port(), config={"dataCoord.segment.maxSize": SEGMENT_MAX_MB}
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def milvus_process(server: MilvusServer) -> psutil.Process:
    return psutil.Process(server._server.server_proc.pid)


def server_memory_mb(server: MilvusServer) -> float:
    """The Milvus process's resident memory (and its children's)."""
    process = milvus_process(server)
    processes = [process, *process.children(recursive=True)]
    return sum(p.memory_info().rss for p in processes) / 1e6


def collection(shape: str) -> str:
    return f"{GALLERY}-{shape}"


def open_store(uri: str, index: GalleryIndex | None = None) -> GalleryStore:
    return GalleryStore(uri, DEFAULT_PACK, DIM, connect_timeout_s=300, index=index)


def index_state(store: GalleryStore, gallery: str) -> dict:
    from face_api.galleries.store import _collection

    return store.client.describe_index(_collection(gallery), "vector")


def indexed(state: dict, rows: int) -> bool:
    """Every sealed row indexed, and at least ``rows`` of them."""
    done = state["indexed_rows"] >= state["total_rows"] and state["pending_index_rows"] == 0
    return done and state["total_rows"] >= rows


def sealed_faces(store: GalleryStore, gallery: str) -> int:
    """The gallery's live faces, every one of them sealed (flushed), so that each will be in
    the index's total: that total counts sealed rows only, and drops as Milvus compacts deleted
    rows away, so the index's own total before a change is no bound to wait for."""
    from face_api.galleries.store import _collection

    settled = time.monotonic() + 180
    while True:
        try:
            store.client.flush(_collection(gallery))
            return store.gallery(gallery).faces
        except MilvusException:  # "node not match" for a while after the server started
            if time.monotonic() > settled:
                raise
            time.sleep(3)


def percentiles(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "p50": statistics.median(ordered) * 1000,
        "p95": ordered[int(len(ordered) * 0.95)] * 1000,
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        "n": len(ordered),
    }


def record(data: Path, entry: dict) -> None:
    entry = {"at": time.strftime("%Y-%m-%d %H:%M"), **entry}
    line = json.dumps(entry, default=lambda value: value.item())  # numpy's numbers
    with (data / "results.jsonl").open("a") as out:
        out.write(line + "\n")
    print(line, flush=True)


# -- build ----------------------------------------------------------------------------------------
def build(args: argparse.Namespace) -> None:
    from face_api.galleries.store import _collection

    shape = SHAPES[args.shape]
    faces = draw(shape, args.faces)
    index = GalleryIndex.of(args.index)
    gallery = collection(shape.name)
    with milvus(args.data) as server:
        store = open_store(server.uri, index)
        started = time.perf_counter()
        store.begin_import(gallery, replace=True)
        for first in range(0, args.faces, BATCH):
            rows = range(first, min(first + BATCH, args.faces))
            store.import_faces(
                gallery,
                [
                    {
                        "face_id": face_id(r),
                        "subject": f"person-{r % faces.identities}",
                        "metadata": None,
                        "vector": faces.vectors[r],
                    }
                    for r in rows
                ],
            )
        store.finish_import(gallery, args.faces)
        imported = time.perf_counter() - started
        print(f"imported {args.faces} faces in {imported:.0f} s", flush=True)
        # Sealed now rather than when Milvus finds the last segment idle (10 minutes): the
        # index covers every imported face at the end of the timed build.
        store.client.flush(_collection(gallery))
        compact(store, gallery)
        searches, enrolls, built = index_build(store, gallery, faces, args.faces)
        record(
            args.data,
            {
                "step": "build",
                "shape": shape.name,
                "faces": args.faces,
                "index": index.kind,
                "build": index.build,
                "import_s": imported,
                "import_faces_per_s": args.faces / imported,
                "index_build_s": built,
                "searches_while_building_ms": percentiles(searches) if searches else None,
                "enrolls_while_building_ms": percentiles(enrolls) if enrolls else None,
                "milvus_rss_mb": server_memory_mb(server),
            },
        )


def index_build(
    store: GalleryStore, gallery: str, faces: Faces, rows: int
) -> tuple[list[float], list[float], float]:
    """Seconds until every row is indexed, searching and enrolling meanwhile (timed)."""
    started = time.perf_counter()
    searches: list[float] = []
    enrolls: list[float] = []
    turn = 0
    while True:
        if indexed(index_state(store, gallery), rows):
            return searches, enrolls, time.perf_counter() - started
        for _ in range(5):
            t0 = time.perf_counter()
            store.search(gallery, faces.probes[turn % PROBES][np.newaxis], 5)
            searches.append(time.perf_counter() - t0)
            turn += 1
        t0 = time.perf_counter()
        store.enroll(gallery, f"newcomer-{turn}", faces.newcomers[turn % 5000][np.newaxis])
        enrolls.append(time.perf_counter() - t0)
        time.sleep(1)


def compact(store: GalleryStore, gallery: str) -> None:
    """The gallery's segments merged up to the server's segment size (Milvus also does it on its
    own, later); Milvus then indexes the merged segments in the background."""
    from face_api.galleries.store import _collection

    job = store.client.compact(_collection(gallery))
    while store.client.get_compaction_state(job) != "Completed":
        time.sleep(2)


def segments(store: GalleryStore, gallery: str) -> list[int]:
    """The rows of each segment the gallery's search runs on."""
    from face_api.galleries.store import _collection

    return sorted(s.num_rows for s in store.client.list_loaded_segments(_collection(gallery)))


def merge(args: argparse.Namespace) -> None:
    """A gallery built before ``SEGMENT_MAX_MB`` was set: its segments merged, timed until the
    merged segments are indexed and serve."""
    gallery = collection(args.shape)
    with milvus(args.data) as server:
        from face_api.galleries.store import _collection

        store = open_store(server.uri)
        store.client.load_collection(_collection(gallery))
        before = segments(store, gallery)
        rows = sealed_faces(store, gallery)
        started = time.perf_counter()
        compact(store, gallery)
        while not indexed(index_state(store, gallery), rows):
            time.sleep(5)
        # The merged segments serve once loaded, seconds after their index; a gallery with
        # nothing to merge keeps its segments.
        handed_over = time.monotonic() + 120
        while segments(store, gallery) == before and time.monotonic() < handed_over:
            time.sleep(5)
        record(
            args.data,
            {
                "step": "merge",
                "shape": args.shape,
                "segments_before": before,
                "segments_after": segments(store, gallery),
                "merged_and_indexed_s": time.perf_counter() - started,
                "milvus_rss_mb": server_memory_mb(server),
            },
        )


# -- reindex --------------------------------------------------------------------------------------
def reindex(args: argparse.Namespace) -> None:
    """Another index for the gallery's vectors (released meanwhile), timed to its last row."""
    from face_api.galleries.store import _collection

    index = GalleryIndex.of(args.index)
    gallery = collection(args.shape)
    with milvus(args.data) as server:
        store = open_store(server.uri, index)
        name = _collection(gallery)
        rows = sealed_faces(store, gallery)  # before the release: a released one takes no query
        store.client.release_collection(name)
        store.client.drop_index(name, "vector")
        params = store.client.prepare_index_params()
        params.add_index("vector", metric_type="COSINE", index_type=index.kind, params=index.build)
        started = time.perf_counter()
        store.client.create_index(name, params)
        while not indexed(index_state(store, gallery), rows):
            time.sleep(2)
        built = time.perf_counter() - started
        store.client.load_collection(name)
        record(
            args.data,
            {
                "step": "reindex",
                "shape": args.shape,
                "index": index.kind,
                "build": index.build,
                "index_build_s": built,
                "milvus_rss_mb": server_memory_mb(server),
            },
        )


# -- measure --------------------------------------------------------------------------------------
def measure(args: argparse.Namespace) -> None:
    shape = SHAPES[args.shape]
    faces = draw(shape, args.faces)
    gallery = collection(shape.name)
    best, best_score = exact_best(faces.vectors, faces.probes)
    stranger_best, stranger_score = exact_best(faces.vectors, faces.strangers)
    with milvus(args.data) as server:
        from face_api.galleries.store import _collection

        store = open_store(server.uri)
        for other in store.client.list_collections():  # one gallery in memory: its own size
            if other != _collection(gallery):
                store.client.release_collection(other)
        store.client.load_collection(_collection(gallery))
        # Faces earlier steps enrolled go first: exact search knows only the imported ones.
        enrolled = 'subject like "newcomer-%" or subject like "enrolled-%"'
        store.client.delete(_collection(gallery), filter=enrolled)
        store._wait_visible(_collection(gallery))
        kind = index_state(store, gallery)["index_type"]
        loaded = segments(store, gallery)
        with serving(server.uri, args) as (served, threshold):
            recalls = {
                name: recall(store, gallery, faces, best, best_score, kind, params)
                for name, params in search_settings(kind, args)
            }
            for params_name, outcome in recalls.items():
                print(f"recall, {kind} {params_name}: {outcome}", flush=True)
            strangers = stranger_check(
                store, gallery, faces, stranger_best, stranger_score, threshold
            )
            cpu = CpuMeter(served, server)
            measured = load(served.url, gallery, faces, cpu)
        record(
            args.data,
            {
                "step": "measure",
                "shape": shape.name,
                "faces": args.faces,
                "index": kind,
                "search_params": dict(args.search or {}),
                "recall": recalls,
                "strangers": strangers,
                **measured,
                "milvus_rss_mb": server_memory_mb(server),
                "segments": loaded,
                "threshold": threshold,
            },
        )


def search_settings(kind: str, args: argparse.Namespace) -> list[tuple[str, dict[str, int]]]:
    """The search parameters recall is measured at: the setting's, and a sweep."""
    _, searches = GALLERY_INDEXES[kind]
    if not searches:
        return [("exact", {})]
    (name,) = searches
    values = args.sweep or [searches[name][0]]
    return [(f"{name}={v}", {name: v}) for v in values]


def recall(
    store: GalleryStore,
    gallery: str,
    faces: Faces,
    best: np.ndarray,
    best_score: np.ndarray,
    kind: str,
    params: dict[str, int],
) -> dict[str, float]:
    """Rank 1 against exact search for probes of enrolled identities: the same face (or one as
    close), the same subject; and the store's own latency (one probe a call, one client)."""
    store.index = GalleryIndex(kind, {}, params)  # the store's search parameters for ``kind``
    same_face = same_subject = 0
    times = []
    for probe, row, score in zip(faces.probes, best, best_score, strict=True):
        t0 = time.perf_counter()
        (matches,) = store.search(gallery, probe[np.newaxis], 5)
        times.append(time.perf_counter() - t0)
        top = matches[0]
        same_face += top.face_id == face_id(row) or top.score >= score - 1e-5
        same_subject += top.subject == f"person-{row % faces.identities}"
    return {
        "rank1_face": same_face / len(faces.probes),
        "rank1_subject": same_subject / len(faces.probes),
        "store_search_ms": percentiles(times),
    }


def stranger_check(
    store: GalleryStore,
    gallery: str,
    faces: Faces,
    best: np.ndarray,
    best_score: np.ndarray,
    threshold: float,
) -> dict[str, float]:
    """Strangers matched at or above the pack's threshold by the index but not by exact search
    (must be none), and how many each matches."""
    index_only = index_matches = exact_matches = 0
    for probe, score in zip(faces.strangers, best_score, strict=True):
        (matches,) = store.search(gallery, probe[np.newaxis], 1)
        found = matches[0].score >= threshold
        index_matches += found
        exact_matches += score >= threshold
        index_only += found and score < threshold
    return {
        "strangers": len(faces.strangers),
        "matched_by_index": index_matches,
        "matched_by_exact": exact_matches,
        "matched_by_index_only": index_only,
        "best_exact_score_median": float(np.median(best_score)),
    }


@contextlib.contextmanager
def serving(uri: str, args: argparse.Namespace) -> Iterator[tuple[RunningServer, float]]:
    """A real ``bentoml serve`` on the Milvus server, and the pack's match threshold."""
    pack_in_store()
    from tests.server import start_server

    env = {"FACE_API_KEYS": API_KEY, "FACE_GALLERY_URI": uri, "FACE_MODEL": DEFAULT_PACK}
    if args.search:
        env["FACE_GALLERY_SEARCH_PARAMS"] = json.dumps(dict(args.search))
    if args.serve_index:
        env["FACE_GALLERY_INDEX"] = args.serve_index
    log = Path(tempfile.mkdtemp()) / "serve.log"
    with start_server(log, env) as server:
        info = httpx.get(f"{server.url}/v1/info/model/{DEFAULT_PACK}", timeout=30).json()
        yield server, float(info["match_threshold"])
        print(f"server log: {log}", flush=True)


class CpuMeter:
    """CPU seconds spent so far by each part: the service's roles (API workers, gallery service,
    runner, the arbiter), Milvus, and this process (the clients)."""

    def __init__(self, served: RunningServer, milvus_server: MilvusServer) -> None:
        self.served = served
        self.milvus = milvus_process(milvus_server)

    def __call__(self) -> dict[str, float]:
        spent = {role: cpu_seconds(self.served, role) for role in service_processes(self.served)}
        for name, process in (("milvus", self.milvus), ("clients", psutil.Process())):
            times = process.cpu_times()
            spent[name] = times.user + times.system
        return spent


def load(url: str, gallery: str, faces: Faces, cpu: CpuMeter) -> dict:
    """Searches from 1 and 8 clients while one client enrolls, one face after another; then
    timed deletes of faces it enrolled; the Server-Timing stages of the 1-client searches, and
    the CPU each part spent a search. The clients are ``KeepAliveClient``s on one event loop:
    they share the measured machine's two cores with the server, so they spend as little as a
    client can."""
    return asyncio.run(_load(url, gallery, faces, cpu))


async def _load(url: str, gallery: str, faces: Faces, cpu: CpuMeter) -> dict:
    headers = {"x-api-key": API_KEY}
    requests = KeepAliveClient(url, headers)  # builds them: the same for every connection
    searches = [
        requests.request_bytes(
            "POST",
            f"/v1/galleries/{gallery}/search",
            {"feature": encode_feature(faces.probes[turn])},
        )
        for turn in range(PROBES)
    ]
    enrolled: list[str] = []
    enroll_times: list[float] = []
    errors: list[str] = []
    stop = asyncio.Event()

    async def enroll_loop() -> None:
        client = KeepAliveClient(url, headers)
        turn = 0
        while not stop.is_set():
            feature = encode_feature(faces.newcomers[turn % len(faces.newcomers)])
            body = {"subject": f"enrolled-{turn}", "feature": feature}
            request = client.request_bytes("POST", f"/v1/galleries/{gallery}/faces", body)
            t0 = time.perf_counter()
            answer = await client.send(request)
            enroll_times.append(time.perf_counter() - t0)
            if answer.status != 200:
                errors.append(answer.body[:200].decode(errors="replace"))
            else:
                enrolled.append(answer.json()["faces"][0]["faceId"])
            turn += 1
        await client.close()

    async def search_loop(offset: int, clients: int, times: list[float], stages: dict) -> None:
        client = KeepAliveClient(url, headers)
        for turn in range(offset, SEARCHES, clients):
            t0 = time.perf_counter()
            answer = await client.send(searches[turn % PROBES])
            took = time.perf_counter() - t0
            if answer.status != 200:
                errors.append(answer.body[:200].decode(errors="replace"))
                continue
            times.append(took)
            if clients == 1:
                for item in answer.headers["server-timing"].split(","):
                    name, dur = item.strip().split(";dur=")
                    stages.setdefault(name, []).append(float(dur))
        await client.close()

    results: dict = {}
    stages: dict[str, list[float]] = {}
    enroller = asyncio.create_task(enroll_loop())
    try:
        for clients in CLIENTS:
            times: list[float] = []
            warming = KeepAliveClient(url, headers)
            warm = await warming.send(searches[0])
            await warming.close()
            assert warm.status == 200, warm.body
            spent_before = cpu()
            started = time.perf_counter()
            await asyncio.gather(*(search_loop(n, clients, times, stages) for n in range(clients)))
            elapsed = time.perf_counter() - started
            spent = {part: s - spent_before.get(part, 0.0) for part, s in cpu().items()}
            results[f"search_{clients}_clients_ms"] = {
                **percentiles(times),
                "per_s": len(times) / elapsed,
                # CPU ms a search, each part (the enrolls beside included)
                "cpu_ms": {part: s * 1000 / len(times) for part, s in spent.items()},
                "cpu_busy": sum(spent.values()) / elapsed / psutil.cpu_count(),
            }
    finally:
        stop.set()
        await enroller
    results["enrolls_during_searches"] = len(enroll_times)
    results["enroll_ms"] = percentiles(enroll_times)
    delete_times = []
    client = KeepAliveClient(url, headers)
    for face in enrolled[:TIMED_DELETES]:
        request = client.request_bytes("DELETE", f"/v1/galleries/{gallery}/faces/{face}")
        t0 = time.perf_counter()
        answer = await client.send(request)
        delete_times.append(time.perf_counter() - t0)
        if answer.status != 200:
            errors.append(answer.body[:200].decode(errors="replace"))
    await client.close()
    results["delete_ms"] = percentiles(delete_times)
    results["stages_1_client_median_ms"] = {n: statistics.median(v) for n, v in stages.items()}
    results["errors"] = errors[:5]
    results["error_count"] = len(errors)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=["build", "merge", "reindex", "measure"])
    parser.add_argument("--data", type=Path, required=True, help="the Milvus server's folder")
    parser.add_argument("--faces", type=int, default=1_000_000)
    parser.add_argument("--shape", choices=list(SHAPES), default="face")
    parser.add_argument("--index", choices=list(GALLERY_INDEXES), default="HNSW")
    parser.add_argument(
        "--search",
        type=lambda text: tuple(json.loads(text).items()),
        help='the service\'s search parameters (FACE_GALLERY_SEARCH_PARAMS), e.g. {"ef": 128}',
    )
    parser.add_argument("--serve-index", help="the service's FACE_GALLERY_INDEX")
    parser.add_argument("--sweep", type=int, nargs="+", help="recall at these ef (or nprobe)")
    args = parser.parse_args()
    args.data.mkdir(parents=True, exist_ok=True)
    {"build": build, "merge": merge, "reindex": reindex, "measure": measure}[args.step](args)


if __name__ == "__main__":
    sys.exit(main())
