"""Load and faults: a bounded soak with good and bad requests mixed, and the runner killed mid-load.

The soak runs on the session's server; the fault test starts its own, since it kills a process.
"""

from __future__ import annotations

import base64
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from tests.paths import IDENTITIES
from tests.server import API_KEY, rss_bytes, service_processes, start_server

CLIENTS = 6
WARM_UP_S = 20
SOAK_S = 60
MAX_GROWTH = 0.10
GOOD_PHOTOS = [base64.b64encode(p.read_bytes()).decode() for p in IDENTITIES[::4]]


@dataclass
class Tally:
    good: int = 0
    bad: int = 0
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, good: bool, problem: str | None) -> None:
        with self.lock:
            if good:
                self.good += 1
            else:
                self.bad += 1
            if problem:
                self.failures.append(problem)


def good_request(client: httpx.Client, i: int) -> str | None:
    photo = GOOD_PHOTOS[i % len(GOOD_PHOTOS)]
    path = ("/v1/feature", "/v1/detect", "/v1/embeddings")[i % 3]
    response = client.post(path, json={"image": photo})
    if response.status_code != 200:
        return f"good {path}: {response.status_code} {response.text[:200]}"
    body = response.json()
    found = body["faces"] if path == "/v1/detect" else [body["face_detect"]]
    if len(found) != 1 or not found[0]["processed"]:
        return f"good {path}: no face in {body}"[:300]
    return None


BAD_REQUESTS: list[tuple[int, Callable[[httpx.Client], httpx.Response]]] = [
    (
        422,
        lambda c: c.post("/v1/detect", json={"image": base64.b64encode(os.urandom(5000)).decode()}),
    ),
    (
        422,
        lambda c: c.post(
            "/v1/feature", content=b'{"image": ', headers={"content-type": "application/json"}
        ),
    ),
    (422, lambda c: c.post("/v1/file/detect", files={"image": ("x.jpg", os.urandom(2000))})),
    (422, lambda c: c.post("/v1/embeddings-only", json={"image": GOOD_PHOTOS[0]})),
    (422, lambda c: c.post("/v1/detect", json={"image": GOOD_PHOTOS[0], "maxResults": 0})),
    (401, lambda c: c.post("/v1/detect", json={}, headers={"x-api-key": "wrong"})),
    (413, lambda c: c.post("/v1/detect", content=b"0" * (21 * 1024 * 1024))),
]


def bad_request(client: httpx.Client, i: int) -> str | None:
    expected, send = BAD_REQUESTS[i % len(BAD_REQUESTS)]
    response = send(client)
    if response.status_code != expected:
        return f"bad #{i % len(BAD_REQUESTS)}: {response.status_code} != {expected}"
    return None


def run_clients(url: str, seconds: float, tally: Tally) -> None:
    deadline = time.monotonic() + seconds

    def client_loop(seed: int) -> None:
        with httpx.Client(base_url=url, headers={"x-api-key": API_KEY}, timeout=120) as client:
            i = seed
            while time.monotonic() < deadline:
                good = i % 2 == 0
                try:
                    problem = good_request(client, i) if good else bad_request(client, i // 2)
                except httpx.HTTPError as exc:
                    problem = f"{'good' if good else 'bad'}: {type(exc).__name__} {exc}"
                tally.record(good, problem)
                i += 1

    threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_soak_good_and_bad_requests_memory_flat(server):
    warm = Tally()
    run_clients(server.url, WARM_UP_S, warm)
    before = rss_bytes(server)
    soak = Tally()
    run_clients(server.url, SOAK_S, soak)
    after = rss_bytes(server)
    assert not warm.failures and not soak.failures, (warm.failures + soak.failures)[:10]
    assert soak.good > 50 and soak.bad > 50, soak
    growth = {role: (after[role] - before[role]) / before[role] for role in before}
    assert all(g < MAX_GROWTH for g in growth.values()), {
        role: f"{before[role] >> 20} -> {after[role] >> 20} MiB" for role in before
    }
    assert httpx.get(f"{server.url}/v1/health").json() == {"status": "ok"}


def test_killing_the_runner_mid_load_fails_cleanly_and_recovers(tmp_path, imported_pack):
    """SIGKILL the runner under load. Requests in flight are retried by the API worker: answered
    once the new runner is up, or 503 with a message at the request deadline, never later; health
    says 503 meanwhile; then everything is served again without a restart."""
    timeout_s = 15
    env = {"FACE_API_KEYS": API_KEY, "FACE_REQUEST_TIMEOUT_S": str(timeout_s)}
    with start_server(tmp_path / "serve.log", env) as server:
        results: list[tuple[float, float, int, str]] = []  # start, end, status, body
        stop = threading.Event()

        def client_loop(seed: int) -> None:
            with httpx.Client(
                base_url=server.url, headers={"x-api-key": API_KEY}, timeout=timeout_s + 30
            ) as client:
                i = seed
                while not stop.is_set():
                    start = time.monotonic()
                    photo = GOOD_PHOTOS[i % len(GOOD_PHOTOS)]
                    response = client.post("/v1/feature", json={"image": photo})
                    results.append((start, time.monotonic(), response.status_code, response.text))
                    i += 1

        threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(3)
        (runner,) = service_processes(server)["InsightFaceRunner"]
        os.kill(runner.pid, signal.SIGKILL)
        killed = time.monotonic()
        runner.wait(timeout=10)  # gone, so no answer can come from it
        asked = time.monotonic()
        health = httpx.get(f"{server.url}/v1/health", timeout=30)
        health_took = time.monotonic() - asked
        recovered = wait_until_serving(server.url, timeout=120)
        time.sleep(2)
        stop.set()
        for thread in threads:
            thread.join(timeout=timeout_s + 40)
        assert recovered, f"not serving again after the runner was killed:\n{server.log()[-3000:]}"

        # The restarted runner needs seconds to load the models; health does not wait for it.
        assert health.status_code == 503 and health.json()["status"] == "unavailable"
        assert health_took < 4
        spanning = [r for r in results if r[0] < killed < r[1]]
        assert spanning, "no request was in flight when the runner died"
        for start, end, status, body in results:
            assert status in (200, 503), (status, body[:300])
            assert end - start < timeout_s + 5, (end - start, status)
            if status == 503:
                assert "retry later" in body and ("timed out" in body or "unavailable" in body)
        assert results[-1][2] == 200  # serving again
        (new_runner,) = service_processes(server)["InsightFaceRunner"]
        assert new_runner.pid != runner.pid


def wait_until_serving(url: str, timeout: float) -> bool:
    photo = GOOD_PHOTOS[0]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            health = httpx.get(f"{url}/v1/health", timeout=10)
            if health.status_code == 200:
                response = httpx.post(
                    f"{url}/v1/feature",
                    json={"image": photo},
                    headers={"x-api-key": API_KEY},
                    timeout=30,
                )
                if response.status_code == 200:
                    return True
        except httpx.HTTPError:
            pass
        time.sleep(1)
    return False
