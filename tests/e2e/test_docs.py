"""The docs page: the service's own Swagger UI at /docs (and /), from local assets only."""

from __future__ import annotations

import re

import httpx
import pytest

from face_api import __version__


@pytest.mark.parametrize("path", ["/docs", "/"])
def test_the_docs_page_is_the_services_own(server, path):
    response = httpx.get(f"{server.url}{path}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert f"<title>face-api {__version__}: API docs</title>" in page
    assert "BentoML Prediction Service" not in page and "googletagmanager" not in page
    assert "validatorUrl: null" in page  # Swagger UI's badge would fetch validator.swagger.io


def test_everything_the_page_loads_comes_from_the_server_itself(server):
    page = httpx.get(f"{server.url}/docs").text
    assert not re.search(r"https?://", page)  # no absolute URL at all: nothing third-party
    assets = re.findall(r'(?:src|href)="([^"]+)"', page) + re.findall(r'url: "([^"]+)"', page)
    assert len(assets) == 4  # css, two scripts, the spec
    for asset in assets:
        assert asset.startswith("./")
        response = httpx.get(f"{server.url}/{asset[2:]}")
        assert response.status_code == 200, asset
        if asset.endswith(".css"):
            assert not re.search(r"url\(\s*['\"]?https?://", response.text)
    spec = httpx.get(f"{server.url}/docs.json").json()
    assert spec["info"]["title"] == "face-api" and spec["info"]["version"] == __version__
