"""Bad input over real HTTP: each gets its 4xx with a message, never a 500."""

from __future__ import annotations

import base64

import cv2
import httpx
import numpy as np
import pytest

from tests.helpers import b64
from tests.paths import IDENTITIES
from tests.server import API_KEY

PHOTO = IDENTITIES[0]
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


def assert_422(response: httpx.Response, field: str | None) -> list[dict]:
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail
    for item in detail:
        assert set(item) >= {"loc", "msg", "type"} and item["msg"]
        assert item["loc"][0] == "body"
    if field is not None:
        assert any(item["loc"][1:2] == [field] for item in detail), detail
    return detail


@pytest.mark.parametrize("path", POSTS)
@pytest.mark.parametrize("key", [None, "", "wrong-key", API_KEY.upper(), API_KEY[:-1]])
def test_every_post_refuses_missing_or_wrong_key(server, path, key):
    headers = {} if key is None else {"x-api-key": key}
    response = httpx.post(f"{server.url}{path}", headers=headers, json={"image": "x"})
    assert response.status_code == 401
    assert isinstance(response.json()["detail"], str)


def test_every_configured_key_works(server):
    for key in (API_KEY, "second-key"):
        response = httpx.post(
            f"{server.url}/v1/feature-score",
            headers={"x-api-key": key},
            json={"feature1": "AACAPw==", "feature2": "AACAPw=="},
        )
        assert response.status_code == 200 and response.json() == {"score": 1.0}


def test_malformed_json(api):
    response = api.post(
        "/v1/detect", content=b'{"image": ', headers={"content-type": "application/json"}
    )
    detail = assert_422(response, None)
    assert detail[0]["type"] == "json_invalid"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/detect", {"image": "@@ not base64 @@"}, "image"),
        ("/v1/feature", {"image": base64.b64encode(b"plain text, no image").decode()}, "image"),
        ("/v1/feature", {"image": ""}, "image"),
        ("/v1/score", {"image1": b64(PHOTO), "image2": "bm90IGFuIGltYWdl"}, "image2"),
        ("/v1/feature-only", {"image": b64(PHOTO)}, "image"),
        ("/v1/embeddings-only", {"image": b64(PHOTO)}, "image"),
        ("/v1/detect", {"image": b64(PHOTO), "maxResults": 0}, "maxResults"),
        ("/v1/detect", {"image": b64(PHOTO), "maxResults": 1001}, "maxResults"),
        ("/v1/multi-feature", {"image": b64(PHOTO), "maxResults": -3}, "maxResults"),
        ("/v1/detect", {"image": b64(PHOTO), "detectSortType": 3}, "detectSortType"),
        ("/v1/detect", {"image": b64(PHOTO), "seq": "abc"}, "seq"),
        ("/v1/detect", {"image": b64(PHOTO), "seq": True}, "seq"),
        ("/v1/detect", {"image": b64(PHOTO), "maxResults": "10"}, "maxResults"),
        ("/v1/multi-feature", {"image": b64(PHOTO), "maxResults": 2.5}, "maxResults"),
        ("/v1/detect", {"image": b64(PHOTO), "detectSortType": True}, "detectSortType"),
        ("/v1/detect", {"seq": 1}, "image"),
        ("/v1/feature-score", {"feature1": "AAAA", "feature2": "AACAPw=="}, "feature1"),
        ("/v1/feature-score", {"feature1": "AACAPw==", "feature2": "AACAPwAAgD8="}, "feature2"),
    ],
)
def test_bad_json_fields_are_422_naming_the_field(api, path, body, field):
    assert_422(api.post(path, json=body), field)


# Every route that takes a JSON body, and its multipart twin where there is one.
JSON_POSTS = [p for p in POSTS if not p.startswith("/v1/file/")] + [
    "/v1/galleries/people/faces",
    "/v1/galleries/people/search",
    "/v1/galleries/people/verify",
]
TWINS = {
    p: "/v1/file/" + p.removeprefix("/v1/")
    for p in JSON_POSTS
    if "/v1/file/" + p.removeprefix("/v1/") in POSTS or p.startswith("/v1/galleries/")
}


@pytest.mark.parametrize("path", JSON_POSTS)
def test_an_upload_to_a_json_route_is_422_naming_the_file_twin(api, server, path):
    # The everyday mix-up: `curl -F image=@photo.jpg .../v1/detect` instead of /v1/file/detect.
    files = {name: ("photo.jpg", PHOTO.read_bytes(), "image/jpeg") for name in ("image", "image1")}
    response = api.post(path, files=files, data={"subject": "x"})
    detail = assert_422(response, None)
    assert detail[0]["type"] == "value_error.content_type"
    if path in TWINS:
        assert TWINS[path] in detail[0]["msg"], detail
    else:
        assert "/v1/file/" not in detail[0]["msg"] and "JSON" in detail[0]["msg"]


@pytest.mark.parametrize("path", JSON_POSTS)
@pytest.mark.parametrize(
    "content_type",
    [None, "application/json", "text/plain", "application/octet-stream", "image/jpeg"],
)
def test_raw_image_bytes_to_a_json_route_are_422(api, path, content_type):
    headers = {} if content_type is None else {"content-type": content_type}
    response = api.post(path, content=PHOTO.read_bytes(), headers=headers)
    detail = assert_422(response, None)
    # Sent as JSON, they are no JSON text; sent as anything else, the route takes only JSON.
    expected = "json_invalid" if content_type == "application/json" else "value_error.content_type"
    assert detail[0]["type"] == expected


def test_no_wrong_door_reached_the_log_as_a_server_error(api, server):
    for path in JSON_POSTS:
        api.post(path, files={"image": ("p.jpg", PHOTO.read_bytes())})
    log = server.log()
    assert "UnicodeDecodeError" not in log and "status=500" not in log


def test_feature_only_says_what_size_it_wants(api):
    detail = assert_422(api.post("/v1/feature-only", json={"image": b64(PHOTO)}), "image")
    assert "112x112" in detail[0]["msg"] and "640x480" in detail[0]["msg"]


@pytest.mark.parametrize(
    ("path", "files", "data", "field"),
    [
        ("/v1/file/detect", {"image": ("a.jpg", b"not an image")}, {}, "image"),
        ("/v1/file/detect", {"image": ("a.jpg", b"")}, {}, "image"),
        (
            "/v1/file/detect",
            {"image": ("a.jpg", PHOTO.read_bytes())},
            {"maxResults": "0"},
            "maxResults",
        ),
        (
            "/v1/file/detect",
            {"image": ("a.jpg", PHOTO.read_bytes())},
            {"detectSortType": "7"},
            "detectSortType",
        ),
        ("/v1/file/feature", {"image": (None, "http://127.0.0.1:9/x.jpg")}, {}, "image"),
        ("/v1/file/feature-only", {"image": ("a.jpg", PHOTO.read_bytes())}, {}, "image"),
        ("/v1/file/score", {"image1": ("a.jpg", PHOTO.read_bytes())}, {}, "image2"),
    ],
)
def test_bad_multipart_is_422_naming_the_field(api, path, files, data, field):
    assert_422(api.post(path, files=files, data=data), field)


def test_unknown_model_name_is_404(api):
    response = api.get("/v1/info/model/no-such-pack")
    assert response.status_code == 404
    assert "no-such-pack" in response.json()["detail"]


def test_body_over_the_limit_is_413(api):
    big = b"0" * (21 * 1024 * 1024)
    response = api.post("/v1/detect", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_server_is_still_healthy_after_bad_input(api):
    assert api.get("/v1/health").json() == {"status": "ok"}
    ok, data = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))
    response = api.post("/v1/detect", json={"image": base64.b64encode(data.tobytes()).decode()})
    assert response.status_code == 200 and response.json()["faces"] == []
