"""Which requests the edge takes (face_api/http/admission.py), on a tiny ASGI app behind the
edge's layers: 401, 404 for a path no route spells, 429 (requests, bytes), 413, and 422 for a
body of the wrong kind or upload fields."""

from __future__ import annotations

import json

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from face_api.http.admission import (
    ApiKeyMiddleware,
    BodyLimitMiddleware,
    ConcurrencyLimitMiddleware,
    ExactPathMiddleware,
)
from tests.fakes import echo, edge_client


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-api-key": ""},
        {"x-api-key": "k3"},
        {"x-api-key": "K1"},
        {"x-api-key": "k1 "},
        {"authorization": "Bearer k3"},
        {"authorization": "Bearer "},
        {"authorization": "Basic k1"},  # only the Bearer scheme carries a key
        {"authorization": "k1"},
        {"x-api-key": "k3", "authorization": "Bearer k1"},  # x-api-key decides when sent
    ],
)
def test_post_without_a_valid_key_is_401(headers):
    response = edge_client().post("/v1/echo", headers=headers, content=b"{}")
    assert response.status_code == 401
    assert isinstance(response.json()["detail"], str)


def test_any_configured_key_passes_and_only_public_gets_need_none():
    client = edge_client()
    assert client.post("/v1/echo", headers={"x-api-key": "k2"}, content=b"ab").json() == {"size": 2}
    assert client.get("/v1/health").status_code == 200
    assert client.get("/v1/info/server").status_code == 200
    # Any other GET (the galleries list enrolled people) and any DELETE need a key.
    assert client.get("/v1/echo").status_code == 401
    assert client.delete("/v1/echo").status_code == 401
    assert client.get("/v1/echo", headers={"x-api-key": "k1"}).status_code == 200


@pytest.mark.parametrize("authorization", ["Bearer k1", "bearer k2", "BEARER k1"])
def test_a_bearer_token_is_a_key_too(authorization):
    client = edge_client()
    response = client.post("/v1/echo", headers={"authorization": authorization}, content=b"ab")
    assert response.status_code == 200 and response.json() == {"size": 2}
    assert client.get("/v1/echo", headers={"authorization": authorization}).status_code == 200


def test_auth_off_serves_this_machine_and_no_other_site():
    client = edge_client(keys=(), enabled=False, base_url="http://127.0.0.1:3000")
    assert client.post("/v1/echo", content=b"{}").status_code == 200
    for host in ("localhost:3000", "[::1]:3000", "10.0.0.7"):
        assert client.post("/v1/echo", headers={"host": host}, content=b"{}").status_code == 200
    # A name that is not this machine's: an attacker's page whose name now points here (DNS
    # rebinding) is same-origin with it, so no browser check stops it; the Host does.
    refused = client.post("/v1/echo", headers={"host": "evil.example:3000"}, content=b"{}")
    assert refused.status_code == 403 and "FACE_ALLOWED_HOSTS" in refused.json()["detail"]
    # A browser's request from another site, as a page there makes it.
    for headers in (
        {"origin": "http://evil.example", "content-type": "text/plain"},
        {"sec-fetch-site": "cross-site"},
        {"origin": "null"},
    ):
        response = client.post("/v1/echo", headers=headers, content=b"{}")
        assert response.status_code == 403, headers
    same_origin = {"origin": "http://127.0.0.1:3000", "sec-fetch-site": "same-origin"}
    assert client.post("/v1/echo", headers=same_origin, content=b"{}").status_code == 200


def test_auth_off_serves_the_names_listed():
    app = ApiKeyMiddleware(
        echo_app := Starlette(routes=[Route("/v1/echo", echo, methods=["POST"])]),
        keys=(),
        enabled=False,
        allowed_hosts=["Faces.Internal"],
    )
    del echo_app
    client = TestClient(app, base_url="http://faces.internal:3000")
    assert client.post("/v1/echo", content=b"{}").status_code == 200
    assert client.post("/v1/echo", headers={"host": "other"}, content=b"{}").status_code == 403


def test_body_over_limit_is_413_with_and_without_content_length():
    client = edge_client()
    headers = {"x-api-key": "k1"}
    assert client.post("/v1/echo", headers=headers, content=b"x" * 1001).status_code == 413

    def chunks():
        for _ in range(30):
            yield b"x" * 100

    response = client.post("/v1/echo", headers=headers, content=chunks())
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]


@pytest.mark.parametrize("method", ["POST", "DELETE", "GET"])
@pytest.mark.parametrize(
    "path", ["/v1/echo/", "/v1//echo", "/v1/./echo", "/v1/g/../echo", "/v1/g/x/..", "/v1/."]
)
def test_a_path_no_route_spells_is_404_never_a_redirect(method, path):
    """Sent as the raw path a client may send (httpx would resolve the dot segments first)."""
    import asyncio

    reached: list[str] = []

    async def app(scope, receive, send):
        reached.append(scope["path"])

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "headers": [],
    }
    asyncio.run(ExactPathMiddleware(app)(scope, receive, send))
    assert reached == [] and sent[0]["status"] == 404
    assert "no such route" in json.loads(sent[1]["body"])["detail"]


def test_a_trailing_slash_is_404_through_the_edge_not_a_redirect():
    client = edge_client()
    for method in ("POST", "DELETE", "GET"):
        response = client.request(
            method, "/v1/echo/", headers={"x-api-key": "k1"}, follow_redirects=False
        )
        assert response.status_code == 404


def test_a_percent_encoded_dot_is_data_not_a_segment():
    # Starlette decodes %2E%2E to ".." in the path; only a literal one in the request is a segment.
    response = edge_client().post("/v1/g/%2E%2E/json", headers={"x-api-key": "k1"}, json={})
    assert response.status_code == 200


def test_bodies_past_the_bytes_in_flight_are_429_before_they_are_read():
    import asyncio

    release = asyncio.Event()
    reading: list[int] = []

    async def slow_app(scope, receive, send):
        await release.wait()
        await JSONResponse({"ok": True})(scope, receive, send)

    limiter = BodyLimitMiddleware(slow_app, max_bytes=1000, max_bytes_in_flight=1500)

    async def call(size: int, declared: bool = True) -> tuple[int, bytes]:
        sent: list[dict] = []
        chunks = [b"x" * 100] * (size // 100)

        async def receive():
            reading.append(size)
            chunk = chunks.pop() if chunks else b""
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

        async def send(message):
            sent.append(message)

        headers = [(b"content-length", str(size).encode())] if declared else []
        scope = {"type": "http", "method": "POST", "path": "/v1/detect", "headers": headers}
        await limiter(scope, receive, send)
        return sent[0]["status"], sent[1]["body"]

    async def scenario():
        first = asyncio.create_task(call(1000))
        while limiter.bytes_in_flight < 1000:
            await asyncio.sleep(0)
        reading.clear()
        status, body = await call(600)  # 1000 + 600 > 1500: refused by its declared length
        assert status == 429 and "FACE_MAX_BODY_BYTES_IN_FLIGHT" in json.loads(body)["detail"]
        assert reading == []  # before a byte of it was read
        status, _ = await call(600, declared=False)  # chunked: refused as its bytes arrive
        assert status == 429
        second = asyncio.create_task(call(500))  # fits beside the first
        while limiter.bytes_in_flight < 1500:
            await asyncio.sleep(0)
        release.set()
        assert [(await t)[0] for t in (first, second)] == [200, 200]
        assert limiter.bytes_in_flight == 0  # every byte given back
        assert (await call(1000))[0] == 200

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("filename", "message"),
    [("x" * 250 + ".jpg", "over 200 bytes"), ("é" * 101, "over 200 bytes"), ("a\x00b", "NUL")],
)
def test_a_file_name_that_cannot_be_taken_is_422_naming_its_field(filename, message):
    client = edge_client(max_bytes=10_000)
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
        f"Content-Type: image/jpeg\r\n\r\nabc\r\n--{boundary}--\r\n"
    ).encode()  # as written, not as a client library escapes it
    headers = {"x-api-key": "k1", "content-type": f"multipart/form-data; boundary={boundary}"}
    response = client.post("/v1/file/echo", headers=headers, content=body)
    assert response.status_code == 422
    [item] = response.json()["detail"]
    assert item["loc"] == ["body", "image"] and item["type"] == "value_error.filename"
    assert message in item["msg"]
    ok = {"image": ("dir/../" + "x" * 196 + ".jpg", b"abc")}  # its base name is what counts
    assert client.post("/v1/file/echo", headers={"x-api-key": "k1"}, files=ok).status_code == 200


def test_text_in_a_file_field_is_422_and_never_fetched():
    client = edge_client(max_bytes=10_000)
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


def test_a_form_sent_to_a_json_route_is_422_naming_its_multipart_twin():
    client = edge_client(max_bytes=10_000)
    headers = {"x-api-key": "k1"}
    upload = {"image": ("a.jpg", b"\xff\xd8\xff\xe0 not utf-8")}
    response = client.post("/v1/g/people/json", headers=headers, files=upload)
    assert response.status_code == 422
    [item] = response.json()["detail"]
    assert item["loc"] == ["body"] and item["type"] == "value_error.content_type"
    assert "/v1/file/g/people/json" in item["msg"]  # the concrete twin, gallery name included
    # No twin: the message says what the route takes and names no other route.
    response = client.post("/v1/json", headers=headers, data={"image": "abc"})
    assert response.status_code == 422
    assert "JSON body" in response.json()["detail"][0]["msg"]
    assert "/v1/file/" not in response.json()["detail"][0]["msg"]


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        ("application/json", b"\xff\xd8\xff\xe0\x00\x10JFIF", "not text in UTF-8"),
        ("application/json", b"", "JSON decode error"),
        ("application/json; charset=utf-8", b'{"image": ', "JSON decode error"),
        ("application/json", b"[" * 100_000, "JSON decode error"),  # deeper than the parser
    ],
)
def test_bytes_that_are_not_json_are_422_on_a_json_route(content_type, body, message):
    client = edge_client(max_bytes=200_000)
    headers = {"x-api-key": "k1", "content-type": content_type}
    response = client.post("/v1/json", headers=headers, content=body)
    assert response.status_code == 422
    [item] = response.json()["detail"]
    assert item["type"] == "json_invalid" and item["loc"][0] == "body"
    assert item["msg"] == message or message in item["msg"]


def test_a_json_syntax_error_is_placed_where_it_is_in_the_body():
    body = b'{"image": "x",\n "seq": }'  # the error at line 2, column 9: character 23
    headers = {"x-api-key": "k1", "content-type": "application/json"}
    response = edge_client().post("/v1/json", headers=headers, content=body)
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {"type": "json_invalid", "loc": ["body", 23], "msg": "JSON decode error"}
    ]
    with pytest.raises(json.JSONDecodeError) as python:  # Python's own parser agrees
        json.loads(body)
    assert python.value.pos == 23


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/octet-stream", "application/jsonx"]
)
def test_json_routes_take_only_application_json(content_type):
    """What a browser sends across sites without asking first (text/plain, or no type) never
    reaches a JSON route: with key checks off, no page of another site can post to one."""
    headers = {"x-api-key": "k1"} | ({"content-type": content_type} if content_type else {})
    response = edge_client().post("/v1/json", headers=headers, content=b'{"a": 1}')
    assert response.status_code == 422
    [item] = response.json()["detail"]
    assert item["type"] == "value_error.content_type" and item["loc"] == ["body"]
    assert "application/json" in item["msg"]
    ok = edge_client().post("/v1/json", headers={"x-api-key": "k1"}, json={"a": 1})
    assert ok.json() == {"body": {"a": 1}, "content_type": "application/json"}


def test_malformed_multipart_is_422_not_a_hang():
    # Found by schemathesis: a part without headers made Starlette raise HTTPException(400)
    # inside the middleware, and the client waited for the request timeout.
    boundary = "7c5156fb04a2177cf9e322ad31ebde44"
    body = f"--{boundary}\r\nNone--{boundary}--\r\n".encode()
    response = edge_client().post(
        "/v1/file/echo",
        content=body,
        headers={"x-api-key": "k1", "content-type": f"multipart/form-data; boundary={boundary}"},
        timeout=10,
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "value_error.multipart"


def test_more_posts_in_flight_than_the_limit_get_429_with_retry_after():
    import asyncio

    release = asyncio.Event()
    started = 0

    async def slow_app(scope, receive, send):
        nonlocal started
        started += 1
        await release.wait()
        await JSONResponse({"ok": True})(scope, receive, send)

    limiter = ConcurrencyLimitMiddleware(slow_app, max_in_flight=2)

    async def call(path: str, method: str = "POST") -> tuple[int, dict, bytes]:
        sent: list[dict] = []

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": method, "path": path, "headers": []}
        await limiter(scope, receive, send)
        headers = dict(sent[0].get("headers", []))
        return sent[0]["status"], headers, sent[1]["body"]

    async def scenario():
        first = [asyncio.create_task(call("/v1/detect")) for _ in range(2)]
        while started < 2:
            await asyncio.sleep(0)
        status, headers, body = await call("/v1/detect")
        assert status == 429 and headers[b"retry-after"] == b"1"
        assert "too many requests" in json.loads(body)["detail"]
        get = asyncio.create_task(call("/v1/health", "GET"))  # GETs are never limited
        while started < 3:
            await asyncio.sleep(0)
        release.set()
        assert [(await t)[0] for t in (*first, get)] == [200, 200, 200]
        assert limiter.in_flight == 0
        assert (await call("/v1/detect"))[0] == 200  # slots are given back

    asyncio.run(scenario())


def test_key_check_time_does_not_depend_on_how_much_of_the_key_matched():
    import time

    # A long key makes a byte-by-byte comparison's early exit measurable: `==` on these takes
    # about twice as long for the near miss as for the first-byte miss.
    key = "k" * 20000
    middleware = ApiKeyMiddleware(lambda *a: None, keys=[key, "other-key"])
    candidates = {
        "nothing matches": b"x" * len(key),
        "all but the last character": key[:-1].encode() + b"x",
    }
    timings: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(30):  # interleaved rounds, so drift on the machine hits every candidate
        for name, presented in candidates.items():
            start = time.perf_counter()
            for _ in range(2000):
                middleware.keys.holds(presented)
            timings[name].append(time.perf_counter() - start)
    medians = {name: sorted(t)[len(t) // 2] for name, t in timings.items()}
    assert max(medians.values()) / min(medians.values()) < 1.3, medians
    assert middleware.keys.holds(key.encode()) and not middleware.keys.holds(key[:-1].encode())


def test_every_key_is_compared_as_a_fixed_length_digest(monkeypatch):
    import hmac

    compared: list[tuple[bytes, bytes]] = []

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return a == b

    monkeypatch.setattr(hmac, "compare_digest", spy)
    middleware = ApiKeyMiddleware(lambda *a: None, keys=["first", "second", "third"])
    assert middleware.keys.holds(b"first")  # a match on the first key does not stop the loop
    assert len(compared) == 3
    assert {len(a) for pair in compared for a in pair} == {32}  # SHA-256, whatever the length
