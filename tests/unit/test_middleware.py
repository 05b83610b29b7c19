"""The contract's middlewares on a tiny ASGI app: 401, 413, 422 shapes, upload fields."""

from __future__ import annotations

import json

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from face_api.middleware import (
    ApiKeyMiddleware,
    BodyLimitMiddleware,
    ErrorShapeMiddleware,
    UploadFieldsMiddleware,
    rewrite_error,
)


async def echo(request: Request) -> JSONResponse:
    return JSONResponse({"size": len(await request.body())})


async def bentoml_validation(request: Request) -> JSONResponse:
    return JSONResponse(
        {
            "error": "2 validation errors",
            "detail": [
                {"type": "missing", "loc": ["image"], "msg": "Field required", "url": "x"},
                {"type": "int_parsing", "loc": ["seq"], "msg": "bad int"},
            ],
        },
        status_code=400,
    )


def make_client(keys=("k1", "k2"), enabled=True, max_bytes=1000) -> TestClient:
    app = Starlette(
        routes=[
            Route("/v1/echo", echo, methods=["POST", "GET"]),
            Route("/v1/file/echo", echo, methods=["POST"]),
            Route("/v1/invalid", bentoml_validation, methods=["POST"]),
            Route("/v1/text404", lambda r: PlainTextResponse("Not Found", 404), methods=["POST"]),
        ]
    )
    app.add_middleware(ErrorShapeMiddleware)
    app.add_middleware(UploadFieldsMiddleware, file_fields={"/v1/file/echo": ("image",)})
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_bytes)
    app.add_middleware(ApiKeyMiddleware, keys=keys, enabled=enabled)  # outermost
    return TestClient(app)


@pytest.mark.parametrize(
    "headers",
    [{}, {"x-api-key": ""}, {"x-api-key": "k3"}, {"x-api-key": "K1"}, {"x-api-key": "k1 "}],
)
def test_post_without_a_valid_key_is_401(headers):
    response = make_client().post("/v1/echo", headers=headers, content=b"{}")
    assert response.status_code == 401
    assert isinstance(response.json()["detail"], str)


def test_any_configured_key_passes_and_gets_need_none():
    client = make_client()
    assert client.post("/v1/echo", headers={"x-api-key": "k2"}, content=b"ab").json() == {"size": 2}
    assert client.get("/v1/echo").status_code == 200


def test_auth_off_lets_posts_through():
    client = make_client(keys=(), enabled=False)
    assert client.post("/v1/echo", content=b"{}").status_code == 200


def test_body_over_limit_is_413_with_and_without_content_length():
    client = make_client()
    headers = {"x-api-key": "k1"}
    assert client.post("/v1/echo", headers=headers, content=b"x" * 1001).status_code == 413

    def chunks():
        for _ in range(30):
            yield b"x" * 100

    response = client.post("/v1/echo", headers=headers, content=chunks())
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]


def test_text_in_a_file_field_is_422_and_never_fetched():
    client = make_client(max_bytes=10_000)
    headers = {"x-api-key": "k1"}
    text_part = {"image": (None, "http://127.0.0.1:1/x.jpg")}  # multipart, no filename
    response = client.post("/v1/file/echo", headers=headers, files=text_part)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "image"]
    urlencoded = client.post(
        "/v1/file/echo", headers=headers, data={"image": "http://127.0.0.1:1/x.jpg"}
    )
    assert urlencoded.status_code == 422
    ok = client.post("/v1/file/echo", headers=headers, files={"image": ("a.jpg", b"abc")})
    assert ok.status_code == 200
    missing = client.post("/v1/file/echo", headers=headers, files={"other": ("a.jpg", b"abc")})
    assert missing.json()["detail"] == [
        {"type": "missing", "loc": ["body", "image"], "msg": "Field required"}
    ]


def test_bentoml_validation_errors_become_fastapi_422():
    response = make_client().post("/v1/invalid", headers={"x-api-key": "k1"}, content=b"{}")
    assert response.status_code == 422
    assert response.json() == {
        "detail": [
            {"type": "missing", "loc": ["body", "image"], "msg": "Field required"},
            {"type": "int_parsing", "loc": ["body", "seq"], "msg": "bad int"},
        ]
    }


def test_plain_text_errors_become_json():
    response = make_client().post("/v1/text404", headers={"x-api-key": "k1"}, content=b"{}")
    assert response.status_code == 404 and response.json() == {"detail": "Not Found"}


def test_rewrite_of_bentoml_error_bodies():
    status, body = rewrite_error(429, b'{"error":"Too many requests"}')
    assert (status, json.loads(body)) == (429, {"detail": "Too many requests"})
    status, body = rewrite_error(400, b'[{"error":"bad thing"}]')
    assert status == 422 and json.loads(body)["detail"][0]["msg"] == "bad thing"
    status, body = rewrite_error(
        400, b'{"error":"x","detail":[{"type":"json_invalid","loc":[],"msg":"Invalid JSON"}]}'
    )
    assert json.loads(body) == {
        "detail": [{"type": "json_invalid", "loc": ["body", 0], "msg": "JSON decode error"}]
    }
