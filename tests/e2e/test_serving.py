"""How requests are served: one runner round trip each, and where their time went."""

from __future__ import annotations

import base64

import cv2
import httpx
import numpy as np
import pytest

from tests.helpers import b64
from tests.paths import CROWD, DEFAULT_PACK, IDENTITIES
from tests.server import METRICS_KEY

RUNNER_CALLS = 'bentoml_service_request_total{endpoint="/'
STAGES = ("parse", "base64", "hop", "decode", "letterbox", "detect", "align", "embed", "response")


def runner_calls(server) -> float:
    """Calls the runner answered (info calls, made by health checks, left out)."""
    total = 0.0
    metrics = httpx.get(f"{server.url}/metrics", headers={"x-api-key": METRICS_KEY}, timeout=30)
    for line in metrics.text.splitlines():
        runner = line.startswith(RUNNER_CALLS) and 'runner_name="InsightFaceRunner"' in line
        if runner and 'endpoint="/info"' not in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def crop_png() -> str:
    image = cv2.imread(str(IDENTITIES[0]))
    crop = cv2.resize(image[100:300, 250:420], (112, 112))
    return base64.b64encode(cv2.imencode(".png", crop)[1].tobytes()).decode()


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/feature", {"image": b64(IDENTITIES[0])}),
        ("/v1/detect", {"image": b64(CROWD[0])}),
        ("/v1/multi-embeddings", {"image": b64(CROWD[0])}),
        ("/v1/score", {"image1": b64(IDENTITIES[0]), "image2": b64(IDENTITIES[1])}),
        ("/v1/embeddings-only", {"image": crop_png()}),
        ("/v1/feature", {"image": "bm90IGFuIGltYWdl"}),  # decoded in the runner: 422 from there
    ],
)
def test_a_request_costs_one_runner_round_trip(api, server, path, body):
    before = runner_calls(server)
    response = api.post(path, json=body)
    assert response.status_code in (200, 422), response.text
    assert runner_calls(server) - before == 1


def test_every_answer_says_where_its_time_went(api):
    response = api.post("/v1/feature", json={"image": b64(IDENTITIES[0])})
    assert response.status_code == 200
    stages = {}
    for item in response.headers["server-timing"].split(","):
        name, _, duration = item.strip().partition(";dur=")
        stages[name] = float(duration)
    assert set(STAGES) <= set(stages), stages
    # every stage did work, and none took longer than the whole request
    assert all(0 < stages[stage] <= stages["total"] for stage in STAGES), stages
    runner = sum(v for k, v in stages.items() if k not in ("parse", "base64", "response", "total"))
    assert runner <= stages["total"] * 1.01  # the parts fit in the whole


def test_a_refused_request_is_timed_too(api):
    response = api.post("/v1/feature", json={"image": "@@"})
    assert response.status_code == 422
    assert "total;dur=" in response.headers["server-timing"]


def test_the_model_detail_says_how_many_images_a_detection_pass_takes(api):
    detector = api.get(f"/v1/info/model/{DEFAULT_PACK}").json()["detector"]
    assert detector["max_batch"] == 1  # on CPU: one image a pass
    assert np.isclose(detector["score_threshold"], 0.5)
