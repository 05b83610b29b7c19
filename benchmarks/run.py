"""The speed harness: insightface's FaceAnalysis vs our pipeline in process vs the served API.

    .venv/bin/python -m benchmarks.run                        # CPU, clients 1, 8, 32, 64
    .venv/bin/python -m benchmarks.run --device cuda          # on a GPU (benchmarks/gpu.sh)
    .venv/bin/python -m benchmarks.run --quick                # one photo, short runs (CI)

Everything in one command, on the same machine and pack, so ratios are fair:
- baseline: ``FaceAnalysis.get()`` in process (decode, detect, then embed one face at a time);
- ours in process: the service's pipeline and engine, without HTTP or the runner's batching;
- served: a real ``bentoml serve`` over HTTP, one client (sequential), then N concurrent clients
  for a fixed time each, driven from several processes so the load generator is not the limit.

The three sequential modes take turns pass by pass, so their ratios hold on a busy machine; the
GPU's utilisation is sampled during the concurrent runs only.

Per workload and mode: requests/s, faces/s, median and p99 latency, errors, the GPU's mean
utilisation (where ``nvidia-smi`` exists) and the batches the runner formed. Then one
``/v1/feature`` request broken into stages from the service's ``Server-Timing`` header.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
API_KEY = "bench-key"
BATCH_METRIC = "face_runner_batch_rows"
STAGES = (
    "parse",
    "base64",
    "hop",
    "decode",
    "letterbox",
    "detect-queue",
    "detect",
    "nms",
    "align",
    "embed-queue",
    "embed",
    "response",
)


@dataclass
class Photo:
    name: str
    data: bytes  # encoded (JPEG, or PNG for the crops)

    @property
    def b64(self) -> str:
        return base64.b64encode(self.data).decode("ascii")


@dataclass
class Measure:
    workload: str
    mode: str
    latencies: list[float] = field(default_factory=list)  # seconds per request
    faces: int = 0
    wall: float = 0.0  # seconds for the whole pass
    errors: int = 0
    gpu_util: float | None = None  # mean %, during served passes on a GPU
    batches: str = ""  # mean rows per pass the runner formed, during this pass

    def percentile_ms(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]

    @property
    def requests_per_s(self) -> float:
        return len(self.latencies) / self.wall if self.wall else 0.0

    @property
    def faces_per_s(self) -> float:
        return self.faces / self.wall if self.wall else 0.0


def load_photos(photos_dir: Path, quick: bool) -> dict[str, list[Photo]]:
    import insightface

    ok, t1 = cv2.imencode(".jpg", insightface.data.get_image("t1"), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    crowd = [Photo(p.name, p.read_bytes()) for p in sorted((photos_dir / "crowd").glob("*.jpg"))]
    single = [
        Photo(p.name, p.read_bytes()) for p in sorted((photos_dir / "identities").glob("*.jpg"))
    ]
    photos = {"t1": [Photo("t1.jpg", t1.tobytes())], "crowd": crowd, "single": single}
    if quick:
        return {name: items[:1] for name, items in photos.items()}
    return photos


def time_calls(
    workload: str, mode: str, items: list, call: Callable[[object], int], repeats: int
) -> Measure:
    return alternating(workload, {mode: call}, items, repeats)[0]


def alternating(
    workload: str, calls: dict[str, Callable[[object], int]], items: list, repeats: int
) -> list[Measure]:
    """Passes over the items, the modes taking turns pass by pass, so the machine's drift (this
    one is shared) spreads over every mode while each pass runs warm; a mode's wall time is
    the sum of its own calls."""
    measures = {mode: Measure(workload, mode) for mode in calls}
    for _ in range(repeats):
        for mode, call in calls.items():
            for item in items:
                t0 = time.perf_counter()
                measures[mode].faces += call(item)
                measures[mode].latencies.append(time.perf_counter() - t0)
    for measure in measures.values():
        measure.wall = sum(measure.latencies)
    return list(measures.values())


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
        return cv2.imdecode(np.frombuffer(photo.data, np.uint8), cv2.IMREAD_COLOR)

    def detect(self, photo: Photo) -> int:
        return len(self.detector_only.get(self.decode(photo)))

    def analyse(self, photo: Photo) -> int:
        return len(self.full.get(self.decode(photo)))

    def embed_crop(self, crop: Photo) -> int:
        self.recognizer.get_feat(self.decode(crop))
        return 1


class InProcess:
    """Our pipeline and engine without HTTP (the code the runner runs, minus its batching)."""

    def __init__(self, engine) -> None:
        from face_api.pipeline.analysis import EngineBackend, FacePipeline

        self.pipeline = FacePipeline(
            EngineBackend(engine), det_size=640, crop_size=engine.crop_size, max_pixels=40_000_000
        )
        self.loop = asyncio.new_event_loop()

    def _analyze(self, photo: Photo, max_faces: int, embed: bool):
        from face_api.ops.timing import Timings
        from face_api.pipeline.faces import DetectSortType

        work = self.pipeline.analyze(
            [("image", photo.data)], max_faces, DetectSortType.AREA, embed, Timings()
        )
        return self.loop.run_until_complete(work)[0]

    def detect(self, photo: Photo) -> int:
        return len(self._analyze(photo, 750, embed=False).faces)

    def analyse(self, photo: Photo, max_faces: int = 750) -> int:
        return len(self._analyze(photo, max_faces, embed=True).faces)

    def embed_crop(self, crop: Photo) -> int:
        from face_api.ops.timing import Timings

        work = self.pipeline.embed_crops([("image", crop.data)], Timings())
        return len(self.loop.run_until_complete(work))


# -- HTTP workloads ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Workload:
    path: str
    extra: tuple[tuple[str, int], ...] = ()

    def body(self, photo: Photo) -> bytes:
        return json.dumps({"image": photo.b64, **dict(self.extra)}).encode()


WORKLOADS = {
    "detect": Workload("/v1/detect"),
    "feature": Workload("/v1/feature"),
    "multi-embeddings": Workload("/v1/multi-embeddings", (("maxResults", 750),)),
    "embeddings-only": Workload("/v1/embeddings-only"),
}


def faces_in(workload: str, answer: dict) -> int:
    if workload == "detect":
        return len(answer["faces"])
    if workload == "multi-embeddings":
        return len(answer["embeddings_info_list"])
    if workload == "feature":
        return int(answer["face_detect"]["processed"])
    return int(bool(answer["embeddings"]))


def post(client: httpx.Client, workload: str, body: bytes) -> tuple[int, httpx.Response]:
    response = client.post(WORKLOADS[workload].path, content=body)
    if response.status_code != 200:
        raise RuntimeError(f"{workload}: {response.status_code} {response.text[:200]}")
    return faces_in(workload, response.json()), response


def _client_process(job: tuple[str, str, list[bytes], int, float, float]) -> tuple:
    """One load-generating process: ``threads`` clients, each cycling over the bodies from
    ``start`` (a shared wall-clock time) until ``start + duration``."""
    url, workload, bodies, threads, start, duration = job
    results: list[tuple[list[float], int, int]] = []

    def client_loop(offset: int) -> None:
        latencies, faces, errors = [], 0, 0
        headers = {"x-api-key": API_KEY, "content-type": "application/json"}
        with httpx.Client(base_url=url, headers=headers, timeout=300) as client:
            time.sleep(max(0.0, start - time.time()))
            i = offset
            while time.time() < start + duration:
                t0 = time.perf_counter()
                try:
                    faces += post(client, workload, bodies[i % len(bodies)])[0]
                except (httpx.HTTPError, RuntimeError):
                    errors += 1
                latencies.append(time.perf_counter() - t0)
                i += 1
        results.append((latencies, faces, errors))

    pool = [threading.Thread(target=client_loop, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return tuple(results)


def concurrent_load(
    url: str, workload: str, bodies: list[bytes], clients: int, duration: float
) -> Measure:
    """``clients`` concurrent clients for ``duration`` seconds, spread over processes."""
    processes = max(1, min(clients, os.cpu_count() or 1, 8))
    shares = [clients // processes + (i < clients % processes) for i in range(processes)]
    start = time.time() + 2.0  # every process is up before the clock starts
    jobs = [(url, workload, bodies, n, start, duration) for n in shares if n]
    measure = Measure(workload, f"served, {clients} clients")
    with multiprocessing.get_context("spawn").Pool(len(jobs)) as pool:
        for per_process in pool.map(_client_process, jobs):
            for latencies, faces, errors in per_process:
                measure.latencies += latencies
                measure.faces += faces
                measure.errors += errors
    measure.wall = duration
    return measure


class GpuSampler:
    """The GPU's utilisation sampled every 250 ms while in use (no-op without nvidia-smi)."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> GpuSampler:
        try:
            self._process = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
                + ["-lms", "250"],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
        except OSError:
            return self
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            first = line.split(",")[0].strip()
            if first.isdigit():
                self.samples.append(float(first))

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)

    @property
    def mean(self) -> float | None:
        return statistics.mean(self.samples) if self.samples else None


def batch_histogram(url: str) -> dict[str, dict[str, float]]:
    """Rows per forward pass the runner formed, from its ``face_runner_batch_rows`` histogram."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        if not line.startswith(BATCH_METRIC) or line.startswith(f"{BATCH_METRIC}_bucket"):
            continue
        name, value = line.rsplit(" ", 1)
        method = name.split('method="', 1)[1].split('"', 1)[0]
        key = name.split("{")[0].rsplit("_", 1)[1]  # sum or count
        entry = out.setdefault(method, {})
        entry[key] = entry.get(key, 0) + float(value)
    return out


def batches_between(before: dict, after: dict) -> str:
    parts = []
    for method, stats in sorted(after.items()):
        prior = before.get(method, {})
        count = stats.get("count", 0) - prior.get("count", 0)
        total = stats.get("sum", 0) - prior.get("sum", 0)
        if count:
            parts.append(f"{method} {total / count:.1f} x{int(count)}")
    return ", ".join(parts)


def stage_breakdown(client: httpx.Client, photos: list[Photo], repeats: int) -> list[str]:
    """One ``/v1/feature`` request in stages: the median of each ``Server-Timing`` stage over
    every single-face photo, and the client's own time around it."""
    per_stage: dict[str, list[float]] = {}
    for _ in range(repeats):
        for photo in photos:
            t0 = time.perf_counter()
            _, response = post(client, "feature", WORKLOADS["feature"].body(photo))
            per_stage.setdefault("client round trip", []).append(1000 * (time.perf_counter() - t0))
            for item in response.headers.get("server-timing", "").split(","):
                name, _, duration = item.strip().partition(";dur=")
                if duration:
                    per_stage.setdefault(name, []).append(float(duration))
    medians = {name: statistics.median(values) for name, values in per_stage.items()}
    rows = [
        "| stage | median ms |",
        "|---|---|",
        *(f"| {name} | {medians[name]:.2f} |" for name in STAGES if name in medians),
    ]
    named = sum(medians.get(name, 0.0) for name in STAGES)
    rows += [
        f"| sum of the stages above | {named:.2f} |",
        f"| server total (first byte in to answer out) | {medians.get('total', 0):.2f} |",
        f"| client round trip (HTTP, connection, client) | {medians['client round trip']:.2f} |",
    ]
    return rows


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
            found = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout.strip()
            gpu = f", GPU {found}"
        except OSError:
            gpu = ", GPU (nvidia-smi not found)"
    return f"{cpu}, {cores} cores{gpu}; providers {providers}"


def aligned_crops(photos: list[Photo], engine) -> list[Photo]:
    """PNG crops of each photo's largest face, aligned exactly as the service aligns them."""
    from face_api.pipeline.faces import DetectSortType, align_faces, letterbox, select_faces
    from face_api.pipeline.faces import to_image_coordinates as to_image

    crops = []
    for photo in photos:
        image = Baseline.decode(photo)
        boxed = letterbox(image, 640)
        rows = to_image(engine.detect(boxed.canvas[np.newaxis])[0], boxed.scale)
        face = select_faces(rows, DetectSortType.AREA, 1)
        crop = align_faces(image, face, engine.crop_size)[0]
        crops.append(Photo(f"{photo.name}.png", cv2.imencode(".png", crop)[1].tobytes()))
    return crops


def run(args: argparse.Namespace) -> str:
    os.environ.setdefault("BENTOML_HOME", tempfile.mkdtemp(prefix="face-bench-"))
    os.environ["BENTOML_DO_NOT_TRACK"] = "True"
    from face_api.inference.engine import FaceEngine
    from face_api.inference.packs import PackNotInStoreError, get_pack, import_pack
    from face_api.ops.settings import Settings
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
    baseline = Baseline(args.pack_dir, list(providers))
    ours = InProcess(engine)
    crops = aligned_crops(photos["single"], engine)
    many = photos["t1"] + photos["crowd"]
    plans = {
        # name: (photo set label, items, baseline call, in-process call)
        "detect": ("t1 + crowd", many, baseline.detect, ours.detect),
        "feature": (
            "single-face",
            photos["single"],
            baseline.analyse,
            lambda p: ours.analyse(p, max_faces=1),
        ),
        "multi-embeddings": ("t1 + crowd", many, baseline.analyse, ours.analyse),
        "embeddings-only": ("112x112 crops", crops, baseline.embed_crop, ours.embed_crop),
    }
    plans = {name: plan for name, plan in plans.items() if name in args.workloads}
    results: list[tuple[str, Measure]] = []
    per_photo: dict[str, list[Measure]] = {}
    env = {"FACE_API_KEYS": API_KEY, "FACE_DEVICE": args.device, "FACE_MODEL": pack, **args.env}
    log_path = Path(tempfile.mkdtemp()) / "serve.log"
    headers = {"x-api-key": API_KEY, "content-type": "application/json"}
    with (
        start_server(log_path, env) as server,
        httpx.Client(base_url=server.url, headers=headers, timeout=300) as client,
    ):
        for name, (label, items, base_call, our_call) in plans.items():
            bodies = [WORKLOADS[name].body(p) for p in items]
            by_body = dict(zip(map(id, items), bodies, strict=True))

            def served(photo: Photo, name: str = name, by_body: dict = by_body) -> int:
                return post(client, name, by_body[id(photo)])[0]

            for call in (base_call, our_call, served):  # warm every path up once
                call(items[0])
            before = batch_histogram(server.url)
            modes = {
                "baseline (FaceAnalysis)": base_call,
                "ours, in process": our_call,
                "served, 1 client": served,
            }
            rows = alternating(name, modes, items, repeats)
            rows[-1].batches = batches_between(before, batch_histogram(server.url))
            for clients in args.clients:
                before = batch_histogram(server.url)
                with GpuSampler() as gpu:
                    loaded = concurrent_load(server.url, name, bodies, clients, args.duration)
                loaded.gpu_util = gpu.mean
                loaded.batches = batches_between(before, batch_histogram(server.url))
                rows.append(loaded)
            results += [(label, m) for m in rows]
            if name == "multi-embeddings":  # per crowd photo, for the many-faces target
                for photo in photos["crowd"]:
                    calls = {"baseline": base_call, "served": served}
                    per_photo[photo.name] = alternating(name, calls, [photo], repeats)
        stages = stage_breakdown(client, photos["single"], repeats)
        stages += ["", *hop_bytes(photos["single"])]
        shed = server.log().count("status=503")
    return report(args, machine_description(providers), results, per_photo, stages, shed)


def report(args, machine, results, per_photo, stages, shed) -> str:
    baselines = {m.workload: m for _, m in results if m.mode.startswith("baseline")}
    settings = ", ".join(f"{k}={v}" for k, v in args.env.items()) or "defaults"
    lines = [
        f"Machine: {machine}. Pack: `{args.pack_dir.name}`, detector at 640x640. "
        f"Server settings: {settings}. "
        f"Sequential passes: {1 if args.quick else args.repeats} over each photo set; "
        f"concurrent clients: {args.duration:g} s each.",
        "",
        "| workload | photos | mode | requests | req/s | faces/s | median ms | p99 ms | "
        "x baseline (faces/s) | errors | GPU util | rows per pass (mean x passes) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, m in results:
        base = baselines[m.workload]
        ratio = m.faces_per_s / base.faces_per_s if base.faces_per_s else float("nan")
        gpu = "" if m.gpu_util is None else f"{m.gpu_util:.0f}%"
        lines.append(
            f"| {m.workload} | {label} | {m.mode} | {len(m.latencies)} | {m.requests_per_s:.1f} | "
            f"{m.faces_per_s:.1f} | {m.percentile_ms(0.5):.1f} | {m.percentile_ms(0.99):.1f} | "
            f"{ratio:.2f} | {m.errors} | {gpu} | {m.batches} |"
        )
    if per_photo:
        lines += [
            "",
            "Many faces in one request (`/v1/multi-embeddings`, maxResults 750, one client):",
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
        "One `/v1/feature` request in stages (median over the single-face photos, one client, "
        "from the `Server-Timing` header):",
        "",
        *stages,
        "",
        f"Responses shed with 503 during the run: {shed}",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one photo per set, short runs")
    parser.add_argument("--repeats", type=int, default=3, help="sequential passes per photo set")
    parser.add_argument(
        "--clients",
        type=lambda text: [int(n) for n in text.split(",")],
        help="concurrent clients per served run, comma-separated (default 8,32,64)",
    )
    parser.add_argument("--duration", type=float, help="seconds per concurrent run (default 10)")
    parser.add_argument(
        "--workloads",
        type=lambda text: text.split(","),
        default=list(WORKLOADS),
        help=f"comma-separated, of {', '.join(WORKLOADS)} (default all)",
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the served run, e.g. FACE_RUNNER_WORKERS=2 (repeatable)",
    )
    parser.add_argument("--pack-dir", type=Path, default=SHARED / "models" / "buffalo_sc_int8")
    parser.add_argument("--photos-dir", type=Path, default=SHARED / "testdata")
    parser.add_argument("--out", type=Path, help="write the tables here (markdown)")
    args = parser.parse_args()
    args.env = dict(item.split("=", 1) for item in args.env)
    if args.clients is None:
        args.clients = [8] if args.quick else [8, 32, 64]
    if args.duration is None:
        args.duration = 2.0 if args.quick else 10.0
    table = run(args)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table)


if __name__ == "__main__":
    main()
