"""x-request-id: the client's echoed, or BentoML's own id returned; the access log names it."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from tests.paths import IDENTITIES
from tests.server import API_KEY


def access_line(server, path: str, marker: str) -> str:
    """The access log's line for ``path`` naming ``marker`` (written as the answer goes out)."""
    lines = server.logged(marker).splitlines()
    return next(line for line in reversed(lines) if f"path={path}" in line and marker in line)


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("POST", "/v1/file/feature", {"files": {"image": ("p.jpg", IDENTITIES[0].read_bytes())}}),
        ("POST", "/v1/feature", {"json": {"image": "@@"}}),  # a 422 too
        ("GET", "/v1/health", {}),
    ],
)
def test_a_clients_request_id_is_echoed_and_logged(server, method, path, kwargs):
    rid = f"client-{time.time_ns()}"
    headers = {"x-api-key": API_KEY, "x-request-id": rid}
    response = httpx.request(method, f"{server.url}{path}", headers=headers, **kwargs)
    assert response.headers["x-request-id"] == rid
    assert f"(request_id={rid})" in access_line(server, path, rid)


def test_without_one_the_id_bentoml_made_comes_back(server):
    response = httpx.get(f"{server.url}/v1/info/model")
    rid = response.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", rid)
    line = access_line(server, "/v1/info/model", rid)
    assert f"trace={rid}" in line  # BentoML's own trace id for the request


@pytest.mark.parametrize("given", ["has spaces in it", "x" * 129, 'quote"d', "semi;colon"])
def test_an_id_that_is_not_a_plain_token_is_replaced(server, given):
    response = httpx.get(f"{server.url}/v1/health", headers={"x-request-id": given})
    rid = response.headers["x-request-id"]
    assert rid != given and re.fullmatch(r"[0-9a-f]{32}", rid)
