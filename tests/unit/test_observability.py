"""What the edge tells of each request (face_api/http/observability.py): its context and the
headers that carry it, and request metrics labelled by route template."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from face_api.http.observability import UNMATCHED, RequestContextMiddleware, RouteLabels
from face_api.ops.context import current

LABELS = RouteLabels(
    [
        "/v1/detect",
        "/v1/galleries/{gallery}",
        "/v1/galleries/{gallery}/faces/{face_id}",
        "/v1/galleries/{gallery}/subjects/{subject:anytext}",
    ]
)


def test_a_path_is_labelled_by_its_route_template():
    assert LABELS("/v1/detect") == "/v1/detect"
    assert LABELS("/v1/galleries/staff") == "/v1/galleries/{gallery}"
    assert LABELS("/v1/galleries/staff/faces/abc") == "/v1/galleries/{gallery}/faces/{face_id}"
    # a path parameter takes slashes and line breaks: still one label
    assert LABELS("/v1/galleries/g/subjects/a/b\nc") == "/v1/galleries/{gallery}/subjects/{subject}"


def test_every_other_path_shares_one_label():
    for path in ("/junk-1", "/v1/detect/", "/v1/galleries/a/b", "/v1/galleries/", "/"):
        assert LABELS(path) == UNMATCHED, path


async def seen(request: Request) -> JSONResponse:
    context = current()
    context.add("work", 1.5)
    return JSONResponse({"id": context.id, "deadline_s": context.deadline_s})


def test_every_request_gets_its_context_and_the_answer_names_it():
    app = Starlette(routes=[Route("/v1/x", seen, methods=["GET", "POST"])])
    app.add_middleware(RequestContextMiddleware, timeout_s=42)
    client = TestClient(app)
    mine = client.post("/v1/x", headers={"x-request-id": "client-id-7"})
    assert mine.json() == {"id": "client-id-7", "deadline_s": 42}
    assert mine.headers["x-request-id"] == "client-id-7"
    timing = mine.headers["server-timing"]
    assert timing.startswith("work;dur=1.50, ") and "total;dur=" in timing
    # an id that is no plain token is replaced by the server's own (the trace id BentoML logs)
    replaced = client.get("/v1/x", headers={"x-request-id": "a b\nc"})
    assert replaced.json()["id"] == replaced.headers["x-request-id"] != "a b\nc"
    assert len(replaced.headers["x-request-id"]) == 32
    assert "server-timing" not in replaced.headers  # a GET: not timed
