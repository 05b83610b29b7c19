"""Deny by default: only health, info, the docs and BentoML's probes answer without a key, and
``/metrics`` (an API key or a metrics-only key) names routes, never the paths clients sent."""

from __future__ import annotations

import re
import socket

import httpx
import pytest

from tests.paths import DEFAULT_PACK
from tests.server import API_KEY, METRICS_KEY

OPEN = [
    "/v1/health",
    "/v1/info/server",
    "/v1/info/model",
    f"/v1/info/model/{DEFAULT_PACK}",
    "/docs",
    "/docs.json",
    "/schema.json",
    "/static_content/swagger-ui.css",  # the docs page's own assets
    "/",
    "/livez",
    "/readyz",
    "/healthz",
]
KEYED = [
    ("GET", "/metrics"),
    ("GET", "/v1/galleries"),
    ("GET", "/v1/galleries/watchlist/subjects"),
    ("DELETE", "/v1/galleries/watchlist/subjects/Jane%20Doe"),
    ("DELETE", "/v1/galleries/watchlist"),
    ("GET", "/junk-1"),
    ("POST", "/junk-1"),
    ("GET", "/v1/nothing-here"),
    ("GET", "/v1/healthz"),  # not /v1/health: no prefix opens a door
    ("POST", "/v1/health"),
    ("POST", "/livez"),
    ("OPTIONS", "/v1/detect"),
]
ENDPOINT = re.compile(r'endpoint="([^"]*)"')


def endpoints(metrics: str) -> set[str]:
    return set(ENDPOINT.findall(metrics))


@pytest.mark.parametrize("path", OPEN)
def test_the_open_routes_answer_without_a_key(server, path):
    assert httpx.get(f"{server.url}{path}", timeout=30).status_code == 200, path


@pytest.mark.parametrize(("method", "path"), KEYED, ids=[f"{m} {p}" for m, p in KEYED])
def test_everything_else_needs_a_key_whether_or_not_it_exists(server, method, path):
    response = httpx.request(method, f"{server.url}{path}", timeout=30)
    assert response.status_code == 401, (path, response.text)
    assert response.json() == {
        "detail": "missing API key: send an x-api-key header or Authorization: Bearer"
    }
    wrong = httpx.request(method, f"{server.url}{path}", headers={"x-api-key": "nope"}, timeout=30)
    assert wrong.status_code == 401
    assert wrong.json() == {"detail": "invalid API key"}


def test_metrics_take_an_api_key_or_a_metrics_key_that_opens_nothing_else(server):
    for key in (API_KEY, METRICS_KEY):
        bearer = {"authorization": f"Bearer {key}"}
        response = httpx.get(f"{server.url}/metrics", headers=bearer, timeout=30)
        assert response.status_code == 200
        assert "bentoml_service_request_total" in response.text
    metrics_only = {"x-api-key": METRICS_KEY}
    assert httpx.get(f"{server.url}/v1/galleries", headers=metrics_only).status_code == 401
    refused = httpx.post(f"{server.url}/v1/detect", headers=metrics_only, json={"image": "x"})
    assert refused.status_code == 401


def test_metrics_name_route_templates_never_what_the_client_sent(server, api):
    before = endpoints(api.get("/metrics").text)
    for n in range(200):
        httpx.get(f"{server.url}/junk-{n}", timeout=30)  # 401, unkeyed
        api.get(f"/junk-{n}")  # 404, keyed
    httpx.delete(f"{server.url}/v1/galleries/watchlist/subjects/Jane%20Doe", timeout=30)
    api.delete("/v1/galleries/watchlist/subjects/Jane%20Doe")  # 404: no such gallery
    api.delete("/v1/galleries/watchlist/faces/0123456789abcdef0123456789abcdef")
    metrics = api.get("/metrics").text
    for secret in ("Jane", "watchlist", "junk", "0123456789abcdef"):
        assert secret not in metrics, secret
    after = endpoints(metrics)
    assert "/v1/galleries/{gallery}/subjects/{subject}" in after
    assert "/v1/galleries/{gallery}/faces/{face_id}" in after
    assert "unmatched" in after
    # 400 new paths, 2 new labels at most (unmatched and the delete routes, if not yet seen).
    assert len(after - before) <= 3, after - before


def websocket_handshake(url: str, path: str) -> bytes:
    """A websocket opening handshake to ``path``, as a browser or a tool sends it; the answer's
    status line and headers."""
    address = httpx.URL(url)
    with socket.create_connection((address.host, address.port), timeout=30) as sock:
        handshake = (
            f"GET {path} HTTP/1.1\r\nHost: {address.host}:{address.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        sock.sendall(handshake.encode())
        return sock.recv(4096)


def test_websocket_handshakes_are_refused_before_any_metric_or_log_sees_their_path(server, api):
    """2,000 handshakes to distinct paths had grown /metrics from 101 KB to 4.8 MB, a label set
    each, names in them, until a restart."""
    before = len(api.get("/metrics").text)
    for n in range(2000):
        answer = websocket_handshake(server.url, f"/v1/galleries/watchlist/subjects/Wanda-{n}")
        assert answer.startswith(b"HTTP/1.1 403"), answer[:80]
    metrics = api.get("/metrics").text
    assert "Wanda" not in metrics and len(metrics) - before < 4096
    assert "Wanda" not in server.log()
