"""Keys and image bytes never reach the log; GETs reveal no keys or file paths."""

from __future__ import annotations

import base64
import os

import httpx

from tests.paths import DEFAULT_PACK, IDENTITIES, ROOT
from tests.server import API_KEY

WRONG_KEY = "wrong-key-5e1f0c2b9d"
GETS = ["/v1/health", "/v1/info/server", "/v1/info/model", f"/v1/info/model/{DEFAULT_PACK}"]


def excerpts(text: str, size: int = 40) -> list[str]:
    """Slices from the start, middle and end of a long string, as a log excerpt would quote."""
    middle = len(text) // 2
    return [text[:size], text[middle : middle + size], text[-size:]]


def answered_ids(responses: list[httpx.Response]) -> list[str]:
    """How each answered request's access line names it: ``(request_id=...)``."""
    return [f"(request_id={r.headers['x-request-id']})" for r in responses]


def test_keys_and_image_bytes_never_reach_the_log(server, api):
    photo = base64.b64encode(IDENTITIES[1].read_bytes()).decode()
    garbage = base64.b64encode(os.urandom(3000)).decode()
    marker = "SECRET-INPUT-" + os.urandom(6).hex()
    requests = [
        api.post("/v1/feature", json={"image": photo}),  # served
        api.post("/v1/detect", json={"image": garbage}),  # not an image
        api.post("/v1/detect", json={"image": 5, "maxResults": marker}),  # schema validation
        api.post("/v1/detect", json={"image": photo, "seq": marker}),
        api.post("/v1/file/feature", files={"image": ("a.jpg", base64.b64decode(garbage))}),
        api.post("/v1/file/detect", data={"image": marker}),  # text in a file field
        httpx.post(f"{server.url}/v1/detect", headers={"x-api-key": WRONG_KEY}, json={}),
        httpx.post(f"{server.url}/v1/detect", headers={"x-api-key": API_KEY + "x"}, json={}),
    ]
    assert [r.status_code for r in requests] == [200, 422, 422, 422, 422, 422, 401, 401]
    # Every request's lines are in (other processes write them) before the log is searched.
    log = server.logged(*answered_ids(requests))
    assert "Exception on /v1/detect [POST]: invalid request" in log  # the requests were logged
    for secret in (API_KEY, "second-key", WRONG_KEY, marker, *excerpts(photo), *excerpts(garbage)):
        assert secret not in log, f"{secret[:12]}... found in the server log"


def test_gets_reveal_no_keys_or_paths(server):
    bentoml_home = os.environ["BENTOML_HOME"]
    for path in [*GETS, "/docs.json", "/v1/info/model/no-such-pack"]:
        text = httpx.get(f"{server.url}{path}").text
        for secret in (API_KEY, "second-key", str(ROOT), bentoml_home, "/tmp/", "/root", "/home"):
            assert secret not in text, (path, secret)
    files = httpx.get(f"{server.url}/v1/info/model/{DEFAULT_PACK}").json()["files"]
    assert all("/" not in f["name"] for f in files)  # the pack's file names, nothing above


def test_client_text_reaches_the_log_escaped_one_request_one_line(server, api):
    """``GET /x%0A<a forged line>`` had put a forged line of its own in the log, and ESC
    sequences reached it raw; an erasure's path named the person erased."""
    marker = "FORGED-" + os.urandom(4).hex()
    forged = f"/x%0A2026-12-07T00:00:00+0000 [INFO] [api_server:FaceAPI:1] {marker} (status=200)"
    person = "Erased-" + os.urandom(4).hex()
    escape = httpx.get(f"{server.url}/v1/%1B%5B31mred", headers={"x-request-id": "a\x1b"})
    assert escape.status_code == 400  # refused by the HTTP server itself: no app, no log line
    responses = [
        httpx.get(f"{server.url}{forged}", timeout=30),
        api.post("/v1/galleries/logged/faces", json={"subject": person, "feature": "AACAPwAAgD8="}),
        api.delete(f"/v1/galleries/logged/subjects/{person}"),
    ]
    log = server.logged(*answered_ids(responses))
    assert not any(line.lstrip().startswith("2026-12-07T00:00:00") for line in log.splitlines())
    assert "\x1b" not in log
    assert person not in log
    assert "/v1/galleries/{gallery}/subjects/{subject}" in log  # the route, not the name
