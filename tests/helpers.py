"""Helpers the tests share (fixtures live in the conftest files, stand-ins in fakes.py)."""

from __future__ import annotations

import base64
import contextlib
import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx

# Every reference POST, JSON and its multipart twin (galleries apart).
POSTS = [
    "/v1/detect",
    "/v1/feature",
    "/v1/feature-only",
    "/v1/multi-feature",
    "/v1/embeddings",
    "/v1/embeddings-only",
    "/v1/multi-embeddings",
    "/v1/score",
    "/v1/feature-score",
    "/v1/file/detect",
    "/v1/file/feature",
    "/v1/file/feature-only",
    "/v1/file/embeddings",
    "/v1/file/embeddings-only",
    "/v1/file/score",
]
# Every route that takes a JSON body.
JSON_POSTS = [p for p in POSTS if not p.startswith("/v1/file/")] + [
    "/v1/galleries/people/faces",
    "/v1/galleries/people/search",
    "/v1/galleries/people/verify",
]


def b64(path: Path) -> str:
    """A file's bytes as the base64 text the API takes."""
    return base64.b64encode(path.read_bytes()).decode("ascii")


def assert_422(response: httpx.Response, field: str | None) -> list[dict]:
    """The response is the contract's 422, naming ``field`` (None: any); its items."""
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail
    for item in detail:
        assert set(item) >= {"loc", "msg", "type"} and item["msg"]
        assert item["loc"][0] == "body"
    if field is not None:
        assert any(item["loc"][1:2] == [field] for item in detail), detail
    return detail


def detect_json(api: httpx.Client, data: bytes) -> httpx.Response:
    return api.post("/v1/detect", json={"image": base64.b64encode(data).decode()})


def detect_file(api: httpx.Client, data: bytes) -> httpx.Response:
    return api.post("/v1/file/detect", files={"image": ("upload", data)})


# An image's two ways in: base64 in JSON, or an uploaded file.
TRANSPORTS = {"json": detect_json, "multipart": detect_file}


@contextlib.contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """A local HTTP server of ``folder``'s files (a mirror of insightface's model zoo); its URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()


# Source defining ``peak_kb()`` for a child Python process: its own memory's high-water mark.
# Not ``getrusage``'s ``ru_maxrss``: a child started by vfork and exec inherits the parent's
# (a long pytest run's hundreds of MB) as its own peak.
PEAK_KB_SOURCE = (
    "def peak_kb():\n"
    "    with open('/proc/self/status') as status:\n"
    "        return next(int(line.split()[1]) for line in status if line.startswith('VmHWM:'))\n"
)
