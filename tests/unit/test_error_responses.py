"""Failures as the contract's HTTP answers (face_api/http/error_responses.py): ``@handled``,
``error_response``, and BentoML's and FastAPI's own error bodies rewritten to the same shapes,
while the service's own pass untouched."""

from __future__ import annotations

import asyncio
import json

from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from face_api.http import error_responses
from face_api.http.error_responses import (
    ErrorShapeMiddleware,
    error_response,
    handled,
    rewrite_error,
)
from face_api.http.observability import RequestContextMiddleware
from face_api.ops.context import RequestContext, serving
from face_api.ops.errors import ApiError
from tests.fakes import edge_client


def test_handled_answers_an_endpoints_api_error_in_the_contracts_shape():
    @handled
    async def endpoint() -> None:
        raise ApiError.invalid("image", "image is empty", "value_error.empty")

    answer = asyncio.run(endpoint())
    assert answer.status_code == 422
    assert json.loads(answer.body)["detail"][0]["loc"] == ["body", "image"]


def test_handled_keeps_the_requests_deadline_and_counts_its_parse():
    @handled
    async def endpoint() -> None:
        await asyncio.Event().wait()  # never set: only the deadline ends it

    async def main():
        with serving(RequestContext(deadline_s=0)) as context:
            return await endpoint(), context

    answer, context = asyncio.run(main())
    assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
    assert json.loads(answer.body) == {"detail": "request timed out after 0 s; retry later"}
    assert "parse" in context.ms and context.handler_ended is not None


def test_an_error_response_is_the_errors_status_body_and_headers_marked_as_ours():
    for error in (ApiError.unavailable("the runner is down"), ApiError(401, "invalid API key")):
        answer = error_response(error, {"allow": "POST"})
        assert answer.status_code == error.status and json.loads(answer.body) == error.body()
        headers = {k: v for k, v in answer.headers.items() if not k.startswith("content-")}
        ours = error_responses.OURS.decode()
        assert headers == {**error.headers(), "allow": "POST", ours: "error"}


def test_the_services_own_error_answers_pass_as_they_are_never_read_again(monkeypatch):
    def unread(status: int, body: bytes) -> tuple[int, bytes]:
        raise AssertionError("an answer of ours was parsed again")

    monkeypatch.setattr(error_responses, "rewrite_error", unread)

    async def ours(request):
        return error_response(ApiError.invalid("image", "not an image", "value_error.image"))

    app = Starlette(routes=[Route("/v1/ours", ours, methods=["POST"])])
    app.add_middleware(ErrorShapeMiddleware)
    app.add_middleware(RequestContextMiddleware, timeout_s=60)  # the edge's outermost layer
    response = TestClient(app).post("/v1/ours")
    assert response.status_code == 422
    assert response.json() == {
        "detail": [{"loc": ["body", "image"], "msg": "not an image", "type": "value_error.image"}]
    }
    assert error_responses.OURS.decode() not in response.headers  # internal: taken off


def test_bentoml_validation_errors_become_fastapi_422():
    response = edge_client().post("/v1/invalid", headers={"x-api-key": "k1"}, content=b"{}")
    assert response.status_code == 422
    assert response.json() == {
        "detail": [
            {"type": "missing", "loc": ["body", "image"], "msg": "Field required"},
            {"type": "int_parsing", "loc": ["body", "seq"], "msg": "bad int"},
        ]
    }


def test_plain_text_errors_become_json():
    response = edge_client().post("/v1/text404", headers={"x-api-key": "k1"}, content=b"{}")
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


def test_fastapi_body_parse_errors_become_422():
    status, body = rewrite_error(400, b'{"detail": "There was an error parsing the body"}')
    assert status == 422
    assert json.loads(body) == {
        "detail": [
            {"type": "value_error", "loc": ["body"], "msg": "There was an error parsing the body"}
        ]
    }
