"""One replica's memory and CPU, for the chart's requests and limits: the CPU image (or the GPU
one, --gpu) run in Docker under the chart's own pod spec (tests/kubernetes.py: its user,
read-only root, environment and volumes, no memory limit), warmed up, then loaded by several
clients with a mix of the API's work; every process's PSS and CPU time sampled twice a second
from the host.

    .venv/bin/python -m benchmarks.probes.replica_memory    # face-api-cpu:latest, 16 clients, 120 s
    .venv/bin/python -m benchmarks.probes.replica_memory --clients 16 --large-mp 36
    .venv/bin/python -m benchmarks.probes.replica_memory --gpu      # face-api:latest on one GPU

The image first (docs/containers.md): ./scripts/build-bento.sh cpu and `bentoml containerize`.
PSS (proportional set size) divides pages shared between processes among them, so the processes'
sum is what they hold together; reading another user's /proc/PID/smaps_rollup needs root.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import itertools
import subprocess
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from tests.kubernetes import CPU_VALUES, docker_run_args, render
from tests.paths import CROWD, IDENTITIES
from tests.server import API_KEY, free_port

DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"
MiB = 1024 * 1024
SECRETS = {"face-api-keys": {"api-keys": f"{API_KEY}\n"}}


def role(cmdline: list[str]) -> str:
    """A container process by what it is: `bentoml serve` (the arbiter), each BentoML service's
    worker by its name, Milvus Lite's engine."""
    if "--service-name" in cmdline:
        return cmdline[cmdline.index("--service-name") + 1]
    if cmdline and cmdline[0].endswith("/milvus"):
        return "Milvus Lite"
    if "serve" in cmdline:
        return "bentoml serve"
    return Path(cmdline[0]).name if cmdline else "?"


@dataclass
class Sampler:
    """PSS and CPU seconds of every process in the container, by role, twice a second."""

    container: str
    peak: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    peak_total: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    _pids: list[int] = field(default_factory=list)
    _listed: float = 0.0

    def pids(self, fresh: bool = False) -> list[int]:
        """The container's processes as the host numbers them, listed again every 5 s (a
        `docker top` costs CPU that the replica's share on this machine would lose)."""
        if fresh or time.monotonic() - self._listed > 5:
            out = subprocess.run(
                [DOCKER, "top", self.container, "-eo", "pid"], capture_output=True, text=True
            ).stdout
            self._pids = [int(line) for line in out.split()[1:] if line.isdigit()]
            self._listed = time.monotonic()
        return self._pids

    def snapshot(self, fresh: bool = True) -> tuple[dict[str, int], float]:
        """PSS by role, and the CPU seconds all the processes have used."""
        pss: dict[str, int] = defaultdict(int)
        cpu = 0.0
        for pid in self.pids(fresh):
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                process = psutil.Process(pid)
                pss[role(process.cmdline())] += process.memory_full_info().pss
                times = process.cpu_times()
                cpu += times.user + times.system
        return pss, cpu

    def run(self) -> None:
        while not self.stop.is_set():
            pss, _ = self.snapshot(fresh=False)
            for name, value in pss.items():
                self.peak[name] = max(self.peak[name], value)
            self.peak_total = max(self.peak_total, sum(pss.values()))
            self.stop.wait(0.5)


@functools.cache
def photo_bytes(path: Path) -> bytes:
    return path.read_bytes()


@functools.cache
def b64(path: Path) -> str:
    """Each photo encoded once: the clients share the replica's two cores on this machine."""
    return base64.b64encode(path.read_bytes()).decode("ascii")


@functools.cache
def large_photo(megapixels: float) -> bytes:
    """A crowd photo scaled up to about this many pixels, as a JPEG: the decoded images the
    runner holds are what grows its memory (FACE_MAX_PIXELS allows 40 million)."""
    import cv2

    image = cv2.imread(str(CROWD[0]))
    scale = (megapixels * 1e6 / (image.shape[0] * image.shape[1])) ** 0.5
    ok, data = cv2.imencode(".jpg", cv2.resize(image, None, fx=scale, fy=scale))
    assert ok
    return data.tobytes()


def workloads(url: str, large_mp: float) -> list[Callable[[httpx.Client], httpx.Response]]:
    """The API's kinds of work, each one request: JSON and multipart detection, features, many
    faces' embeddings of a crowd, gallery enrolls and searches (Milvus Lite in the pod); with
    ``large_mp``, also detection on a photo of that many megapixels."""
    photos = itertools.cycle(IDENTITIES)
    crowd = b64(CROWD[0])

    def feature(c: httpx.Client) -> httpx.Response:
        return c.post(f"{url}/v1/feature", json={"image": b64(next(photos))})

    def detect(c: httpx.Client) -> httpx.Response:
        return c.post(f"{url}/v1/detect", json={"image": b64(next(photos)), "maxResults": 10})

    def file_detect(c: httpx.Client) -> httpx.Response:
        return c.post(f"{url}/v1/file/detect", files={"image": photo_bytes(next(photos))})

    def crowd_embeddings(c: httpx.Client) -> httpx.Response:
        return c.post(f"{url}/v1/multi-embeddings", json={"image": crowd, "maxResults": 1000})

    def enroll(c: httpx.Client) -> httpx.Response:
        photo = next(photos)
        body = {"subject": photo.stem.split("_")[0], "image": b64(photo)}
        return c.post(f"{url}/v1/galleries/load/faces", json=body)

    def search(c: httpx.Client) -> httpx.Response:
        return c.post(f"{url}/v1/galleries/load/search", json={"image": b64(next(photos))})

    def large(c: httpx.Client) -> httpx.Response:
        return c.post(f"{url}/v1/file/detect", files={"image": large_photo(large_mp)})

    mix = [feature, detect, file_detect, feature, crowd_embeddings, enroll, search]
    return [*mix, large] if large_mp else mix


def drive(url: str, clients: int, seconds: float, large_mp: float) -> dict[str, int]:
    """``clients`` threads sending the workloads in turn for ``seconds``; answers by status."""
    counts: dict[str, int] = defaultdict(int)
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(offset: int) -> None:
        work = workloads(url, large_mp)
        limits = httpx.Limits(keepalive_expiry=2)
        headers = {"x-api-key": API_KEY}
        with httpx.Client(headers=headers, timeout=120, limits=limits) as c:
            for i in itertools.count(offset):
                if time.monotonic() >= deadline:
                    return
                try:
                    status = str(work[i % len(work)](c).status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                with lock:
                    counts[status] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return dict(counts)


@contextlib.contextmanager
def replica(image: str, gpu: bool) -> Iterator[tuple[str, str]]:
    """The image run as the chart runs it (its CPU or GPU values, Milvus Lite on a volume), with
    no memory limit."""
    objects = render() if gpu else render(CPU_VALUES)
    name = f"face-api-replica-{free_port()}"
    port = free_port()
    with tempfile.TemporaryDirectory() as secrets_dir:
        args = docker_run_args(objects, image, name, port, Path(secrets_dir), SECRETS, limits=False)
        if gpu:  # the one GPU the chart asks for, as the NVIDIA device plugin would give it
            args[-1:-1] = ["--gpus", "device=0"]
        subprocess.run([DOCKER, "run", *args], check=True, capture_output=True)
        try:
            yield name, f"http://127.0.0.1:{port}"
        finally:
            subprocess.run([DOCKER, "rm", "-f", name], capture_output=True)
            volumes = [a.split(":")[0] for a in args if a.startswith(f"{name}-")]
            if volumes:
                subprocess.run([DOCKER, "volume", "rm", *volumes], capture_output=True)


def wait_ready(url: str, timeout: float = 300) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return time.monotonic() - start
        time.sleep(0.5)
    raise RuntimeError(f"not ready in {timeout} s")


def mib(value: float) -> str:
    return f"{value / MiB:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--image", help="default: face-api-cpu:latest, or face-api:latest with --gpu"
    )
    parser.add_argument("--gpu", action="store_true", help="the GPU image on one GPU (NVIDIA)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of load")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds of the same load first")
    parser.add_argument(
        "--large-mp", type=float, default=0.0, help="add detection on a photo this many megapixels"
    )
    args = parser.parse_args()

    image = args.image or ("face-api:latest" if args.gpu else "face-api-cpu:latest")
    with replica(image, args.gpu) as (name, url):
        sampler = Sampler(name)
        thread = threading.Thread(target=sampler.run, daemon=True)
        thread.start()
        ready_s = wait_ready(url)
        started, _ = sampler.snapshot()
        drive(url, args.clients, args.warmup, args.large_mp)
        warm, cpu_before = sampler.snapshot()
        load_start = time.monotonic()
        counts = drive(url, args.clients, args.duration, args.large_mp)
        wall = time.monotonic() - load_start
        after, cpu_after = sampler.snapshot()
        sampler.stop.set()
        thread.join()

    cpu = cpu_after - cpu_before
    requests = sum(counts.values())
    print(
        f"Ready (/readyz) {ready_s:.1f} s after `docker run`. Load: {args.clients} clients for "
        f"{wall:.0f} s, answers {counts} ({requests / wall:.1f} requests/s); the replica's "
        f"processes used {cpu / wall:.2f} CPUs, {cpu / requests * 1000:.0f} ms of CPU a "
        f"request.\n"
    )
    print("| process | PSS after start, MiB | after warm-up | peak | after load |")
    print("|---|---|---|---|---|")
    for name in sorted(sampler.peak, key=lambda n: -sampler.peak[n]):
        print(
            f"| {name} | {mib(started.get(name, 0))} | {mib(warm.get(name, 0))} | "
            f"{mib(sampler.peak[name])} | {mib(after.get(name, 0))} |"
        )
    print(
        f"| **all** | {mib(sum(started.values()))} | {mib(sum(warm.values()))} | "
        f"{mib(sampler.peak_total)} | {mib(sum(after.values()))} |"
    )


if __name__ == "__main__":
    main()
