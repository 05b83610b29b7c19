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
import tempfile
from pathlib import Path

import httpx

from benchmarks.harness.cpu import CpuMeter
from benchmarks.harness.implementations import Baseline, InProcess
from benchmarks.harness.load import API_KEY, CLIENT_LIMITS, WORKLOADS, concurrent_load, post
from benchmarks.harness.machine import (
    GpuSampler,
    batch_histogram,
    batches_between,
    machine_description,
)
from benchmarks.harness.measure import Measure, alternating
from benchmarks.harness.model_store import pack_in_store
from benchmarks.harness.peer import PEER_WORKLOADS, Peer
from benchmarks.harness.photos import Photo, aligned_crops, load_photos
from benchmarks.harness.report import report
from benchmarks.harness.stages import stage_breakdown
from tests.paths import DATA, DEFAULT_PACK_DIR

ROOT = Path(__file__).resolve().parent.parent


def run(args: argparse.Namespace) -> str:
    pack = pack_in_store(args.pack_dir)
    from face_api.inference.engine import FaceEngine
    from face_api.ops.settings import Settings
    from tests.server import start_server

    peer = Peer(args.peer) if args.peer else None
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
        httpx.Client(
            base_url=server.url, headers=headers, timeout=300, limits=CLIENT_LIMITS
        ) as client,
    ):
        this_process, server_cpu = CpuMeter(), CpuMeter(server.process.pid)
        agreement = None
        if peer is not None:  # before anything is timed
            agreement = peer.check_agreement(photos["single"], ours.largest_face_embedding)
        for name, (label, items, base_call, our_call) in plans.items():
            bodies = [WORKLOADS[name].body(p) for p in items]
            by_body = dict(zip(map(id, items), bodies, strict=True))

            def served(photo: Photo, name: str = name, by_body: dict = by_body) -> int:
                return post(client, name, by_body[id(photo)])[0]

            modes = {
                "baseline (FaceAnalysis)": base_call,
                "ours, in process": our_call,
                "served, 1 client": served,
            }
            meters = dict.fromkeys(list(modes)[:2], this_process) | {"served, 1 client": server_cpu}
            if peer is not None:
                peer_bodies = [PEER_WORKLOADS[name].body(p) for p in items]
                by_peer_body = dict(zip(map(id, items), peer_bodies, strict=True))

                def peer_call(photo: Photo, name: str = name, by_body: dict = by_peer_body) -> int:
                    return peer.call(name, by_body[id(photo)])

                modes[f"{peer.name}, 1 client"] = peer_call
                meters[f"{peer.name}, 1 client"] = peer.cpu
            for call in modes.values():  # warm every path up once
                call(items[0])
            before = batch_histogram(server.url, API_KEY)
            rows = alternating(name, modes, items, repeats, meters)
            rows[2].batches = batches_between(before, batch_histogram(server.url, API_KEY))
            for clients in args.clients:
                before = batch_histogram(server.url, API_KEY)
                with GpuSampler() as gpu:
                    loaded = concurrent_load(
                        server.url, name, bodies, clients, args.duration, server_cpu
                    )
                loaded.gpu_util = gpu.mean
                loaded.batches = batches_between(before, batch_histogram(server.url, API_KEY))
                rows.append(loaded)
                if peer is not None:
                    rows.append(
                        concurrent_load(
                            peer.url, name, peer_bodies, clients, args.duration, peer.cpu, peer.name
                        )
                    )
            results += [(label, m) for m in rows]
            if name == "multi-embeddings":  # per crowd photo, for the many-faces target
                for photo in photos["crowd"]:
                    calls = {"baseline": base_call, "served": served}
                    if peer is not None:
                        calls["peer"] = peer_call
                    per_photo[photo.name] = alternating(name, calls, [photo], repeats)
        stages = stage_breakdown(client, photos["single"], repeats)
        # Requests answered 503 (the start's health probes before the runner is up are not)
        shed = sum(
            "method=POST" in line and "status=503" in line for line in server.log().splitlines()
        )
    machine = machine_description(providers)
    return report(args, machine, results, per_photo, stages, shed, peer, agreement)


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
    # The tests' pack and photos (tests/paths.py): ../shared/models/buffalo_sc_int8 beside the
    # checkout, else the buffalo_sc the test session fetched.
    parser.add_argument("--pack-dir", type=Path, default=DEFAULT_PACK_DIR)
    parser.add_argument("--photos-dir", type=Path, default=DATA)
    parser.add_argument(
        "--peer",
        metavar="NAME=URL",
        help="also drive a running peer service, alternating with ours pass by pass: "
        "insightface-rest=http://127.0.0.1:18080 (benchmarks/README.md says how to start it)",
    )
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
