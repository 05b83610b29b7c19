"""The limits as settings, on a server started with small ones: in-flight POSTs (429), the faces
per answer cap, and the request deadline (503, here with the runner hung by SIGSTOP)."""

from __future__ import annotations

import base64
import threading
import time

import httpx
import pytest

from tests.paths import CROWD, IDENTITIES
from tests.server import API_KEY, service_processes, start_server

CROWD_PHOTO = base64.b64encode(CROWD[-1].read_bytes()).decode()  # test4.jpg, 161 faces
FACE_PHOTO = base64.b64encode(IDENTITIES[0].read_bytes()).decode()


@pytest.fixture(scope="module")
def limited_server(imported_pack, tmp_path_factory):
    env = {
        "FACE_API_KEYS": API_KEY,
        "FACE_MAX_CONCURRENCY": "2",
        "FACE_MAX_RESULTS_CAP": "3",
        "FACE_REQUEST_TIMEOUT_S": "2",
    }
    with start_server(tmp_path_factory.mktemp("limited") / "serve.log", env) as server:
        yield server


@pytest.fixture(scope="module")
def limited(limited_server):
    headers = {"x-api-key": API_KEY}
    with httpx.Client(base_url=limited_server.url, headers=headers, timeout=60) as client:
        yield client


def test_faces_per_answer_are_capped_not_refused(limited):
    response = limited.post("/v1/detect", json={"image": CROWD_PHOTO, "maxResults": 750})
    assert response.status_code == 200
    faces = response.json()["faces"]
    assert len(faces) == 3
    areas = [
        (f["boundingBox"]["right"] - f["boundingBox"]["left"])
        * (f["boundingBox"]["bottom"] - f["boundingBox"]["top"])
        for f in faces
    ]
    assert areas == sorted(areas, reverse=True)  # still the largest ones
    assert (
        limited.post("/v1/detect", json={"image": CROWD_PHOTO, "maxResults": 1001}).status_code
        == 422
    )


def test_a_hung_runner_gives_503_at_the_deadline_and_work_resumes(limited_server, limited):
    (runner,) = service_processes(limited_server)["InsightFaceRunner"]
    runner.suspend()  # SIGSTOP: the runner hangs, connections stay open
    try:
        start = time.monotonic()
        response = limited.post("/v1/feature", json={"image": FACE_PHOTO})
        took = time.monotonic() - start
        health = limited.get("/v1/health")
    finally:
        runner.resume()
    assert response.status_code == 503, response.text[:200]
    assert response.json()["detail"] == "request timed out after 2 s; retry later"
    assert response.headers["retry-after"] == "1"
    assert took < 5
    assert health.status_code == 503
    assert limited.post("/v1/feature", json={"image": FACE_PHOTO}).status_code == 200


def test_more_posts_in_flight_than_allowed_get_429_and_gets_still_answer(limited_server, limited):
    statuses: list[int] = []
    refused: list[httpx.Response] = []
    lock = threading.Lock()
    six_refused = threading.Event()

    def send() -> None:
        response = limited.post("/v1/feature", json={"image": FACE_PHOTO})
        with lock:
            statuses.append(response.status_code)
            if response.status_code == 429:
                refused.append(response)
                if len(refused) == 6:
                    six_refused.set()

    # With the runner hung, two requests take both slots and hold them until their deadline;
    # the other six are refused at once, so once they are, both slots are held.
    (runner,) = service_processes(limited_server)["InsightFaceRunner"]
    runner.suspend()
    try:
        threads = [threading.Thread(target=send) for _ in range(8)]
        for thread in threads:
            thread.start()
        six_refused.wait(timeout=30)
        health = limited.get("/v1/info/model")  # GETs are never counted against the limit
        for thread in threads:
            thread.join()
    finally:
        runner.resume()
    assert health.status_code == 200
    assert sorted(statuses) == [429] * 6 + [503] * 2
    assert "too many requests in flight (limit 2 per worker)" in refused[0].json()["detail"]
    assert refused[0].headers["retry-after"] == "1"
    # Slots come back: a request after the burst is served.
    assert limited.post("/v1/feature", json={"image": FACE_PHOTO}).status_code == 200
