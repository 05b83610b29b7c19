"""Readiness under load: does a busy replica stay in its Service?

A real `bentoml serve` on this machine's CPU, loaded by N clients (the bars' 32 by default) with
the API's heaviest work (`/v1/multi-embeddings` of the crowd photos, several seconds each on
CPU) and its lightest (`/v1/feature` of one face), while a prober does what the kubelet does:
a fresh connection to a path every second, given up after the probe's timeout (5 s, the chart's).
A probe counts as failed on a timeout or any status but 200.

    .venv/bin/python -m benchmarks.probes.readiness                          # 32 clients, 60 s each
    .venv/bin/python -m benchmarks.probes.readiness --clients 160 --env FACE_MAX_CONCURRENCY=128

The second line puts more requests in flight in one API worker than BentoML's client to the
model runner keeps connections (aiohttp's 100): the shape of the chart's GPU defaults before
issue 34 (2 workers x 128).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from benchmarks.harness.cpu import CpuMeter
from benchmarks.harness.load import API_KEY, concurrent_load
from benchmarks.harness.model_store import pack_in_store
from benchmarks.harness.photos import load_photos
from tests.paths import ROOT

PATHS = ("/readyz", "/livez", "/v1/health")


@dataclass
class Prober:
    url: str
    timeout: float
    results: dict[str, list[tuple[bool, float]]] = field(
        default_factory=lambda: {path: [] for path in PATHS}
    )
    stop: threading.Event = field(default_factory=threading.Event)

    def probe(self, path: str) -> tuple[bool, float]:
        t0 = time.perf_counter()
        try:
            # A new connection each time, as the kubelet's HTTP probes make.
            ok = httpx.get(self.url + path, timeout=self.timeout).status_code == 200
        except httpx.HTTPError:
            ok = False
        return ok, time.perf_counter() - t0

    def run(self, path: str) -> None:
        while not self.stop.is_set():
            t0 = time.monotonic()
            self.results[path].append(self.probe(path))
            self.stop.wait(max(0.0, 1.0 - (time.monotonic() - t0)))

    def summary(self, path: str) -> str:
        rows = self.results[path]
        if not rows:
            return f"{path}: no probes"
        failed = sum(not ok for ok, _ in rows)
        ms = sorted(1000 * s for _, s in rows)
        p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))]
        return (
            f"{path}: {len(rows)} probes, {failed} failed; latency ms median "
            f"{statistics.median(ms):.0f}, p99 {p99:.0f}, max {ms[-1]:.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--timeout", type=float, default=5.0, help="the probe's timeoutSeconds")
    parser.add_argument("--workloads", default="multi-embeddings,feature")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the server")
    parser.add_argument("--photos-dir", type=Path, default=ROOT / "tests" / "data")
    args = parser.parse_args()
    pack_in_store()
    from tests.server import start_server

    env = {"FACE_API_KEYS": API_KEY, **dict(item.split("=", 1) for item in args.env)}
    photos = load_photos(args.photos_dir, quick=False)
    sets = {"multi-embeddings": photos["crowd"], "feature": photos["single"]}
    with tempfile.TemporaryDirectory() as tmp, start_server(Path(tmp) / "server.log", env) as srv:
        print(f"server {srv.url}, env {env}, {args.clients} clients, {args.duration:.0f} s each")
        for workload in args.workloads.split(","):
            bodies = [
                f'{{"image": "{p.b64}", "maxResults": 750}}'.encode()
                if workload == "multi-embeddings"
                else f'{{"image": "{p.b64}"}}'.encode()
                for p in sets[workload]
            ]
            prober = Prober(srv.url, args.timeout)
            threads = [threading.Thread(target=prober.run, args=(p,)) for p in PATHS]
            for thread in threads:
                thread.start()
            measure = concurrent_load(
                srv.url, workload, bodies, args.clients, args.duration, CpuMeter(srv.process.pid)
            )
            prober.stop.set()
            for thread in threads:
                thread.join()
            print(
                f"\n{workload}: {len(measure.latencies)} answers, {measure.errors} errors, "
                f"latency median {1000 * statistics.median(measure.latencies):.0f} ms"
            )
            for path in PATHS:
                print("  " + prober.summary(path))


if __name__ == "__main__":
    main()
