"""The HTTP workloads, and concurrent clients spread over processes so the load generator is
not the limit."""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
from dataclasses import dataclass

import httpx

from benchmarks.harness.measure import Measure
from benchmarks.harness.photos import Photo

API_KEY = "bench-key"
# The server closes a keep-alive connection idle for 5 s (uvicorn's default), httpx keeps one for
# 5 s: a request sent on it at that moment meets "Server disconnected without sending a
# response". The harness's clients give up idle connections well before the server does.
CLIENT_LIMITS = httpx.Limits(keepalive_expiry=2.0)


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
        with httpx.Client(
            base_url=url, headers=headers, timeout=300, limits=CLIENT_LIMITS
        ) as client:
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
