"""No redirect ever changes which resource a request acts on: the gallery deletes that real
clients send with dot segments and trailing slashes, through python-requests, httpx and curl
(with and without following redirects, and as written with ``--path-as-is``), each leave the
gallery whole. Before, ``requests.delete(".../faces/" + quote("..", safe=""))`` was resolved by
the client to ``DELETE /v1/galleries/G/``, redirected (307, method kept) to the gallery, and the
client followed: the whole gallery was dropped."""

from __future__ import annotations

import subprocess
from urllib.parse import quote

import httpx
import numpy as np
import pytest
import requests

from face_api.pipeline.features import encode_feature
from tests.server import API_KEY

GALLERY = "dots"
SEGMENTS = ["..", ".", "%2E%2E", "%2e", quote("..", safe=""), "../..", "%2E%2E/%2E%2E"]
# What follows the gallery in each DELETE: a face or subject given as a dot segment, or the
# gallery's own path with a trailing slash.
TAILS = [f"/{kind}/{s}" for kind in ("faces", "subjects") for s in SEGMENTS] + ["/", "/faces/"]


@pytest.fixture(scope="module")
def gallery(api) -> int:
    """Two people in the gallery, whose faces every DELETE below must leave in place."""
    for subject in ("alice", "bob"):
        feature = encode_feature(np.random.default_rng(len(subject)).normal(size=512))
        body = {"subject": subject, "feature": feature}
        assert api.post(f"/v1/galleries/{GALLERY}/faces", json=body).status_code == 200
    return 2


def faces_left(api) -> int:
    response = api.get(f"/v1/galleries/{GALLERY}/faces")
    assert response.status_code == 200, response.text
    return response.json()["total"]


def with_requests(url: str) -> int:
    headers = {"x-api-key": API_KEY}
    return requests.delete(url, headers=headers, allow_redirects=True, timeout=30).status_code


def with_httpx(url: str) -> int:
    headers = {"x-api-key": API_KEY}
    return httpx.delete(url, headers=headers, follow_redirects=True, timeout=30).status_code


def with_curl(url: str, *options: str) -> int:
    done = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "DELETE", *options]
        + ["-H", f"x-api-key: {API_KEY}", url],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return int(done.stdout)


CLIENTS = {
    "requests": with_requests,
    "httpx": with_httpx,
    "curl -L": lambda url: with_curl(url, "-L"),
    "curl -L --path-as-is": lambda url: with_curl(url, "-L", "--path-as-is"),
}


@pytest.mark.parametrize("client", CLIENTS)
def test_dot_segments_and_trailing_slashes_never_reach_the_gallery(server, api, gallery, client):
    for tail in TAILS:
        status = CLIENTS[client](f"{server.url}/v1/galleries/{GALLERY}{tail}")
        # No such route (404), no such face or subject (404), a face id that is no id (422),
        # and never the gallery's delete.
        assert status in (404, 405, 422), (client, tail, status)
        assert faces_left(api) == gallery, (client, tail)


def test_a_non_get_with_a_trailing_slash_is_never_redirected(server):
    for method, path in [
        ("POST", "/v1/detect/"),
        ("DELETE", f"/v1/galleries/{GALLERY}/"),
        ("POST", f"/v1/galleries/{GALLERY}/faces/"),
        ("GET", "/v1/galleries/"),
    ]:
        response = httpx.request(
            method, f"{server.url}{path}", headers={"x-api-key": API_KEY}, json={}, timeout=30
        )
        assert response.status_code == 404, (method, path, response.status_code)
        assert "location" not in response.headers


def test_a_gallery_is_dropped_only_by_a_request_that_names_it_twice(api):
    """httpx sends ``DELETE .../faces/..`` as ``DELETE /v1/galleries/G`` (it resolves the dot
    segment itself): without ``confirm`` naming the gallery, that drops nothing."""
    body = {"subject": "carol", "feature": encode_feature(np.ones(512))}
    assert api.post("/v1/galleries/twice/faces", json=body).status_code == 200
    assert httpx.URL("http://h/v1/galleries/twice/faces/..").raw_path == b"/v1/galleries/twice"
    for params in ({}, {"confirm": "other"}, {"confirm": ""}):
        response = api.delete("/v1/galleries/twice", params=params)
        assert response.status_code == 422, (params, response.text)
        assert response.json()["detail"][0]["loc"] == ["query", "confirm"]
    assert api.get("/v1/galleries/twice/faces").json()["total"] == 1
    dropped = api.delete("/v1/galleries/twice", params={"confirm": "twice"})
    assert dropped.json() == {"deleted": 1}
