"""The speed harness: insightface's FaceAnalysis vs our pipeline in process vs the served API.

    .venv/bin/python -m benchmarks.run                 # full run, table into benchmarks/README.md
    .venv/bin/python -m benchmarks.run --quick         # one photo, one pass (what CI runs)

Everything in one process and one run, on the same machine and pack, so ratios are fair:
- baseline: ``FaceAnalysis.get()`` (detects, then embeds one face at a time) on each photo;
- ours in process: the service's pipeline and runner engine, without HTTP;
- served: a real ``bentoml serve`` over HTTP, sequential and with 8 concurrent clients.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
API_KEY = "bench-key"
CONCURRENCY = 8
BATCH_METRIC = "face_runner_batch_rows"


@dataclass
class Photo:
    name: str
    jpeg: bytes
    faces: int = 0  # faces the baseline finds (at most maxResults where that applies)

    @property
    def b64(self) -> str:
        return base64.b64encode(self.jpeg).decode("ascii")


@dataclass
class Measure:
    workload: str
    mode: str
    latencies: list[float] = field(default_factory=list)  # seconds per request
    faces: int = 0
    wall: float = 0.0  # seconds for the whole pass
    errors: int = 0

    @property
    def median_ms(self) -> float:
        return 1000 * statistics.median(self.latencies)

    @property
    def p95_ms(self) -> float:
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]

    @property
    def requests_per_s(self) -> float:
        return len(self.latencies) / self.wall

    @property
    def faces_per_s(self) -> float:
        return self.faces / self.wall


def load_photos(photos_dir: Path, quick: bool) -> dict[str, list[Photo]]:
    import insightface

    ok, t1 = cv2.imencode(".jpg", insightface.data.get_image("t1"), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    t1_photo = Photo("t1.jpg", t1.tobytes())
    crowd = [Photo(p.name, p.read_bytes()) for p in sorted((photos_dir / "crowd").glob("*.jpg"))]
    single = [
        Photo(p.name, p.read_bytes()) for p in sorted((photos_dir / "identities").glob("*.jpg"))
    ]
    if quick:
        return {"t1": [t1_photo], "crowd": crowd[:1], "single": single[:1]}
    return {"t1": [t1_photo], "crowd": crowd, "single": single}


def time_calls(
    workload: str, mode: str, items: list, call: Callable[[object], int], repeats: int
) -> Measure:
    measure = Measure(workload, mode)
    start = time.perf_counter()
    for _ in range(repeats):
        for item in items:
            t0 = time.perf_counter()
            measure.faces += call(item)
            measure.latencies.append(time.perf_counter() - t0)
    measure.wall = time.perf_counter() - start
    return measure


def concurrent_calls(
    workload: str, items: list, call: Callable[[httpx.Client, object], int], url: str, repeats: int
) -> Measure:
    """CONCURRENCY clients, each sending every item `repeats` times."""
    measure = Measure(workload, f"served, {CONCURRENCY} clients")

    def client_loop(_: int) -> tuple[list[float], int, int]:
        latencies, faces, errors = [], 0, 0
        with httpx.Client(base_url=url, headers={"x-api-key": API_KEY}, timeout=300) as client:
            for _ in range(repeats):
                for item in items:
                    t0 = time.perf_counter()
                    try:
                        faces += call(client, item)
                    except (httpx.HTTPError, AssertionError):
                        errors += 1
                    latencies.append(time.perf_counter() - t0)
        return latencies, faces, errors

    start = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        for latencies, faces, errors in pool.map(client_loop, range(CONCURRENCY)):
            measure.latencies += latencies
            measure.faces += faces
            measure.errors += errors
    measure.wall = time.perf_counter() - start
    return measure


# -- the three implementations ----------------------------------------------------------------
class Baseline:
    """insightface's own pipeline, as a user of the library would call it."""

    def __init__(self, pack_dir: Path, providers: list[str]) -> None:
        from insightface.app import FaceAnalysis

        self.full = FaceAnalysis(name=str(pack_dir), providers=providers)
        self.full.prepare(ctx_id=0, det_size=(640, 640))
        self.detector_only = FaceAnalysis(
            name=str(pack_dir), providers=providers, allowed_modules=["detection"]
        )
        self.detector_only.prepare(ctx_id=0, det_size=(640, 640))
        self.recognizer = self.full.models["recognition"]

    @staticmethod
    def decode(photo: Photo) -> np.ndarray:
        return cv2.imdecode(np.frombuffer(photo.jpeg, np.uint8), cv2.IMREAD_COLOR)

    def detect(self, photo: Photo) -> int:
        return len(self.detector_only.get(self.decode(photo)))

    def analyse(self, photo: Photo) -> int:
        return len(self.full.get(self.decode(photo)))

    def embed_crop(self, crop_png: bytes) -> int:
        crop = cv2.imdecode(np.frombuffer(crop_png, np.uint8), cv2.IMREAD_COLOR)
        self.recognizer.get_feat(crop)
        return 1


class InProcess:
    """Our pipeline and engine without HTTP (the same code the two services run)."""

    def __init__(self, engine) -> None:
        from face_api.pipeline import EngineBackend, FacePipeline

        self.pipeline = FacePipeline(
            EngineBackend(engine),
            det_size=640,
            crop_size=engine.crop_size,
            max_pixels=40_000_000,
            embed_chunk=64,
        )
        self.loop = asyncio.new_event_loop()

    def _run(self, coroutine):
        return self.loop.run_until_complete(coroutine)

    def detect(self, photo: Photo) -> int:
        from face_api.faces import DetectSortType

        image = self.pipeline.image_from_bytes(photo.jpeg, "image")
        return len(self._run(self.pipeline.find_faces(image, DetectSortType.AREA, 750)))

    def analyse(self, photo: Photo, max_results: int = 750) -> int:
        from face_api.faces import DetectSortType

        async def work() -> int:
            image = self.pipeline.image_from_bytes(photo.jpeg, "image")
            faces = await self.pipeline.find_faces(image, DetectSortType.AREA, max_results)
            return len(await self.pipeline.embed_faces(image, faces))

        return self._run(work())

    def embed_crop(self, crop_png: bytes) -> int:
        crop = self.pipeline.image_from_bytes(crop_png, "image")
        self._run(self.pipeline.embed(self.pipeline.check_crop(crop, "image")[np.newaxis]))
        return 1


def post(client: httpx.Client, path: str, body: dict) -> dict:
    response = client.post(path, json=body)
    assert response.status_code == 200, f"{path}: {response.status_code} {response.text[:200]}"
    return response.json()


HTTP_CALLS: dict[str, Callable[[httpx.Client, object], int]] = {
    "detect": lambda c, p: len(post(c, "/v1/detect", {"image": p.b64})["faces"]),
    "feature": lambda c, p: int(
        post(c, "/v1/feature", {"image": p.b64})["face_detect"]["processed"]
    ),
    "multi-embeddings": lambda c, p: len(
        post(c, "/v1/multi-embeddings", {"image": p.b64, "maxResults": 750})["embeddings_info_list"]
    ),
    "embeddings-only": lambda c, crop: int(
        bool(
            post(c, "/v1/embeddings-only", {"image": base64.b64encode(crop).decode()})["embeddings"]
        )
    ),
}


def batch_histogram(url: str) -> dict[str, dict[str, float]]:
    """Rows per forward pass the runner formed, from its ``face_runner_batch_rows`` histogram."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        if not line.startswith(BATCH_METRIC):
            continue
        name, value = line.rsplit(" ", 1)
        method = name.split('method="', 1)[1].split('"', 1)[0]
        entry = out.setdefault(method, {})
        if name.startswith(f"{BATCH_METRIC}_bucket"):
            le = name.split('le="', 1)[1].split('"', 1)[0]
            entry[f"le{le}"] = entry.get(f"le{le}", 0) + float(value)
        elif "_sum" in name.split("{")[0] or "_count" in name.split("{")[0]:
            key = name.split("{")[0].rsplit("_", 1)[1]
            entry[key] = entry.get(key, 0) + float(value)
    return out


def machine_description(providers: list[str]) -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0))
    gpu = ""
    if "CUDAExecutionProvider" in providers:
        try:
            import subprocess

            gpu = (
                ", GPU "
                + subprocess.run(
                    ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                    capture_output=True,
                    text=True,
                    timeout=30,
                ).stdout.strip()
            )
        except OSError:
            gpu = ", GPU (nvidia-smi not found)"
    return f"{cpu}, {cores} cores{gpu}; providers {providers}"


def aligned_crops(ours: InProcess, photos: list[Photo]) -> list[bytes]:
    """PNG crops of each photo's largest face, aligned exactly as the service aligns them."""
    from face_api.faces import DetectSortType, align_faces

    crops = []
    for photo in photos:
        image = ours.pipeline.image_from_bytes(photo.jpeg, "image")
        face = ours._run(ours.pipeline.find_faces(image, DetectSortType.AREA, 1))
        crop = align_faces(image, face, ours.pipeline.crop_size)[0]
        crops.append(cv2.imencode(".png", crop)[1].tobytes())
    return crops


def run(args: argparse.Namespace) -> str:
    os.environ.setdefault("BENTOML_HOME", tempfile.mkdtemp(prefix="face-bench-"))
    os.environ["BENTOML_DO_NOT_TRACK"] = "True"
    from face_api.packs import PackNotInStoreError, get_pack, import_pack
    from face_api.settings import Settings
    from runners.engine import FaceEngine
    from tests.server import start_server

    pack = args.pack_dir.name
    try:
        get_pack(pack)
    except PackNotInStoreError:
        import_pack(str(args.pack_dir), pack)

    photos = load_photos(args.photos_dir, args.quick)
    repeats = 1 if args.quick else args.repeats
    engine = FaceEngine(args.pack_dir, Settings(device=args.device))
    providers = engine.providers
    baseline = Baseline(args.pack_dir, [p for p in providers])
    ours = InProcess(engine)
    crops = aligned_crops(ours, photos["single"])

    workloads = {
        # name: (photo set label, items, baseline call, in-process call, http call)
        "detect": ("t1 + crowd", photos["t1"] + photos["crowd"], baseline.detect, ours.detect),
        "feature": (
            "single-face",
            photos["single"],
            baseline.analyse,
            lambda p: ours.analyse(p, max_results=1),
        ),
        "multi-embeddings": (
            "t1 + crowd",
            photos["t1"] + photos["crowd"],
            baseline.analyse,
            ours.analyse,
        ),
        "embeddings-only": ("112x112 crops", crops, baseline.embed_crop, ours.embed_crop),
    }
    per_photo: dict[str, list[Measure]] = {}
    results: list[tuple[str, str, Measure]] = []
    env = {"FACE_API_KEYS": API_KEY, "FACE_DEVICE": args.device, "FACE_MODEL": pack}
    log_path = Path(tempfile.mkdtemp()) / "serve.log"
    with (
        start_server(log_path, env) as server,
        httpx.Client(base_url=server.url, headers={"x-api-key": API_KEY}, timeout=300) as client,
    ):
        before = batch_histogram(server.url)
        for name, (label, items, base_call, our_call) in workloads.items():
            http_call = HTTP_CALLS[name]
            served = functools.partial(http_call, client)
            for call in (base_call, our_call):  # warm up every path once
                call(items[0])
            http_call(client, items[0])
            rows = [
                time_calls(name, "baseline (FaceAnalysis)", items, base_call, repeats),
                time_calls(name, "ours, in process", items, our_call, repeats),
                time_calls(name, "served, sequential", items, served, repeats),
                concurrent_calls(name, items, http_call, server.url, max(1, repeats // 2)),
            ]
            results += [(name, label, m) for m in rows]
            if name == "multi-embeddings":  # per crowd photo, for the many-faces target
                for photo in photos["crowd"]:
                    per_photo[photo.name] = [
                        time_calls(name, "baseline (FaceAnalysis)", [photo], base_call, repeats),
                        time_calls(name, "served, sequential", [photo], served, repeats),
                    ]
        after = batch_histogram(server.url)
        errors_in_log = server.log().count("status=503")
    return report(
        args, machine_description(providers), results, per_photo, before, after, errors_in_log
    )


def report(args, machine, results, per_photo, before, after, shed) -> str:
    baselines = {name: m for name, _, m in results if m.mode.startswith("baseline")}
    lines = [
        f"Machine: {machine}. Pack: `{args.pack_dir.name}`, detector at 640x640. "
        f"Repeats: {1 if args.quick else args.repeats} (concurrent: half, per client).",
        "",
        "| workload | photos | mode | requests | median ms | p95 ms | req/s | faces/s | "
        "x baseline (faces/s) | errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, label, m in results:
        base = baselines[name]
        ratio = m.faces_per_s / base.faces_per_s if base.faces_per_s else float("nan")
        lines.append(
            f"| {name} | {label} | {m.mode} | {len(m.latencies)} | {m.median_ms:.1f} | "
            f"{m.p95_ms:.1f} | {m.requests_per_s:.1f} | {m.faces_per_s:.1f} | {ratio:.2f} | "
            f"{m.errors} |"
        )
    if per_photo:
        lines += [
            "",
            "Many faces in one request (`/v1/multi-embeddings`, maxResults 750):",
            "",
            "| photo | faces | baseline faces/s | served faces/s | x baseline |",
            "|---|---|---|---|---|",
        ]
        for photo, (base, served) in per_photo.items():
            lines.append(
                f"| {photo} | {base.faces // max(1, len(base.latencies))} | "
                f"{base.faces_per_s:.1f} | {served.faces_per_s:.1f} | "
                f"{served.faces_per_s / base.faces_per_s:.2f} |"
            )
    lines += [
        "",
        "Forward passes the runner formed during the run "
        f"(count, mean rows, from its `{BATCH_METRIC}` histogram):",
        "",
    ]
    for method, stats in sorted(after.items()):
        prior = before.get(method, {})
        count = stats.get("count", 0) - prior.get("count", 0)
        total = stats.get("sum", 0) - prior.get("sum", 0)
        buckets = {k: v - prior.get(k, 0) for k, v in stats.items() if k.startswith("le")}
        sizes = ", ".join(f"<={k[2:]}: {int(v)}" for k, v in buckets.items())
        lines.append(
            f"- `{method}`: {int(count)} passes, mean {total / max(count, 1):.2f} "
            f"rows (cumulative {sizes})"
        )
    lines.append(f"- responses shed with 503 during the run: {shed}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one photo per set, one pass")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--pack-dir", type=Path, default=SHARED / "models" / "buffalo_sc_int8")
    parser.add_argument("--photos-dir", type=Path, default=SHARED / "testdata")
    parser.add_argument("--out", type=Path, help="write the table here (markdown)")
    args = parser.parse_args()
    table = run(args)
    print(table)
    if args.out:
        args.out.write_text(table)


if __name__ == "__main__":
    main()
