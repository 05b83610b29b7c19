"""The HTTP workloads, and concurrent clients spread over processes so the load generator is
not the limit."""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from benchmarks.harness.cpu import CpuMeter
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
    body_of: Callable[[Photo], bytes] | None = None  # a peer's own body; else ours, from extra

    def body(self, photo: Photo) -> bytes:
        if self.body_of is not None:
            return self.body_of(photo)
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


def _poster(target: str, workload: str) -> tuple[dict[str, str], Callable[..., int]]:
    """The headers and the call that posts one body and counts its faces, for our service
    (``target`` "ours") or a peer."""
    if target == "ours":
        headers = {"x-api-key": API_KEY, "content-type": "application/json"}
        return headers, lambda client, body: post(client, workload, body)[0]
    from benchmarks.harness import peer

    def call(client: httpx.Client, body: bytes) -> int:
        response = client.post(peer.PEER_WORKLOADS[workload].path, content=body)
        if response.status_code != 200:
            raise RuntimeError(f"{target}: {response.status_code} {response.text[:200]}")
        return peer.faces_in(response.json())

    return peer.PEER_HEADERS, call


def _client_process(job: tuple[str, str, str, list[bytes], int, float, float]) -> tuple:
    """One load-generating process: ``threads`` clients, each cycling over the bodies from
    ``start`` (a shared wall-clock time) until ``start + duration``."""
    target, url, workload, bodies, threads, start, duration = job
    headers, send = _poster(target, workload)
    results: list[tuple[list[float], int, int]] = []

    def client_loop(offset: int) -> None:
        latencies, faces, errors = [], 0, 0
        with httpx.Client(
            base_url=url, headers=headers, timeout=300, limits=CLIENT_LIMITS
        ) as client:
            time.sleep(max(0.0, start - time.time()))
            i = offset
            while time.time() < start + duration:
                t0 = time.perf_counter()
                try:
                    faces += send(client, bodies[i % len(bodies)])
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
    url: str,
    workload: str,
    bodies: list[bytes],
    clients: int,
    duration: float,
    cpu: CpuMeter,
    target: str = "ours",
) -> Measure:
    """``clients`` concurrent clients for ``duration`` seconds, spread over processes; ``cpu``
    meters the server's processes over the run."""
    processes = max(1, min(clients, os.cpu_count() or 1, 8))
    shares = [clients // processes + (i < clients % processes) for i in range(processes)]
    start = time.time() + 2.0  # every process is up before the clock starts
    jobs = [(target, url, workload, bodies, n, start, duration) for n in shares if n]
    mode = f"served, {clients} clients" if target == "ours" else f"{target}, {clients} clients"
    measure = Measure(workload, mode)
    with multiprocessing.get_context("spawn").Pool(len(jobs)) as pool:
        running = pool.map_async(_client_process, jobs)
        time.sleep(max(0.0, start - time.time()))
        cpu_before = cpu.seconds()
        outcome = running.get()
        measure.cpu_s = cpu.seconds() - cpu_before
        for per_process in outcome:
            for latencies, faces, errors in per_process:
                measure.latencies += latencies
                measure.faces += faces
                measure.errors += errors
    measure.wall = duration
    return measure
