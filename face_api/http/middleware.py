"""Pure-ASGI middlewares that hold the public error contract in front of BentoML's native APIs.

Order (outermost first, as ``service.py`` adds them): the API key (401), requests in flight
(429), the body limit (413), the body's kind for its route (422: JSON, or multipart with files),
then BentoML's own error bodies rewritten to FastAPI's shapes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import JSONResponse

from face_api.ops import timing
from face_api.ops.startup import request_id
from face_api.ops.timing import SERVER_TIMING, Timings, since_ms

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

API_PREFIX = "/v1/"
FILE_PREFIX = "/v1/file/"  # the multipart twins of the JSON routes
FORM_CONTENT_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


def _is_api_post(scope: Scope) -> bool:
    return (
        scope["type"] == "http"
        and scope["method"] == "POST"
        and scope["path"].startswith(API_PREFIX)
    )


# GETs anyone may make: liveness and what is served. Everything else under /v1/ needs a key
# (the gallery GETs and DELETEs list and remove enrolled people).
PUBLIC_GET_PREFIXES = ("/v1/health", "/v1/info/")


def _needs_key(scope: Scope) -> bool:
    if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX):
        return False
    public = scope["method"] in ("GET", "HEAD") and scope["path"].startswith(PUBLIC_GET_PREFIXES)
    return not public


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value
    return None


class BodyTooLargeError(Exception):
    pass


async def read_body(receive: Receive, max_bytes: int | None = None) -> bytes | None:
    """The whole request body, or None when the client disconnected first.

    Raises ``BodyTooLargeError`` as soon as more than ``max_bytes`` arrived.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if max_bytes is not None and size > max_bytes:
            raise BodyTooLargeError
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    """A ``receive`` that hands over an already read body once, then waits for disconnect."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


class BodyLimitMiddleware:
    """413 for a POST body over ``max_bytes``, by Content-Length or while reading a chunked body.

    The body is read here once (bounded) and replayed, so nothing downstream can be made to
    buffer more than the limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _is_api_post(scope):
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        try:
            body = await read_body(receive, self.max_bytes)
        except BodyTooLargeError:
            await self._too_large(scope, receive, send)
            return
        if body is not None:
            await self.app(scope, _replay(body), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse(
            {"detail": f"request body is over the limit of {self.max_bytes} bytes"},
            status_code=413,
            headers={"connection": "close"},
        )
        await response(scope, receive, send)


REQUEST_ID = b"x-request-id"
# A client's id is kept when it is a plain token; anything else (spaces, quotes, control
# characters: log injection) is replaced by the server's own.
_CLIENT_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:/+=@-]{1,128}$")


def _trace_id() -> str:
    """The id BentoML's access log shows for this request (``trace=...``): its trace id."""
    from opentelemetry import trace

    return format(trace.get_current_span().get_span_context().trace_id, "032x")


class RequestIdMiddleware:
    """Every answer carries ``x-request-id``: the client's own, or the id BentoML made for the
    request (its trace id), and the access log line names it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _header(scope, REQUEST_ID)
        if given is not None and _CLIENT_REQUEST_ID.match(given):
            value = given.decode("ascii")
        else:
            value = _trace_id()
        token = request_id.set(value)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != REQUEST_ID]
                message = {**message, "headers": [*headers, (REQUEST_ID, value.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)


class ServerTimingMiddleware:
    """A ``Server-Timing`` header on every answer to a POST under /v1/: the request's stages
    (``face_api.ops.timing``), ``response`` (serializing the answer) and ``total``, in ms."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _is_api_post(scope):
            await self.app(scope, receive, send)
            return
        timings = Timings()
        token = timing.current.set(timings)

        async def send_with_timings(message: Message) -> None:
            if message["type"] == "http.response.start":
                if timings.handler_ended is not None:
                    timings.add("response", since_ms(timings.handler_ended))
                timings.add("total", since_ms(timings.started))
                headers = [*message.get("headers", []), (SERVER_TIMING, timings.header())]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_timings)
        finally:
            timing.current.reset(token)


class ConcurrencyLimitMiddleware:
    """429 for a POST when ``max_in_flight`` POSTs are already being served by this worker.

    BentoML's own ``traffic.max_concurrency`` also counts GETs (a health probe would be refused
    under load) and answers ``{"error": ...}`` from outside our middlewares; this one keeps the
    contract's ``{"detail": ...}`` and tells the client when to retry.
    """

    def __init__(self, app: ASGIApp, max_in_flight: int, retry_after_s: int = 1) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.retry_after_s = retry_after_s
        self.in_flight = 0  # one event loop per worker: no lock needed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _is_api_post(scope):
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            response = JSONResponse(
                {
                    "detail": f"too many requests in flight (limit {self.max_in_flight} per "
                    "worker); retry later"
                },
                status_code=429,
                headers={"retry-after": str(self.retry_after_s)},
            )
            await response(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


def presented_key(scope: Scope) -> bytes | None:
    """The key a request carries: its ``x-api-key`` header, else ``Authorization: Bearer KEY``
    (what ``bentoml.SyncHTTPClient(url, token=KEY)`` sends)."""
    key = _header(scope, b"x-api-key")
    if key is not None:
        return key
    scheme, _, credentials = (_header(scope, b"authorization") or b"").partition(b" ")
    if scheme.lower() == b"bearer":
        return credentials
    return None


class ApiKeyMiddleware:
    """401 for a request under /v1/ without a configured key (``x-api-key: KEY`` or
    ``Authorization: Bearer KEY``), except the public GETs (``/v1/health``, ``/v1/info/...``).

    The SHA-256 of the presented key is compared with every configured key's, each with
    ``hmac.compare_digest`` and no early exit: the time taken depends neither on which key, nor
    on how much of one matched, nor on whether the lengths match.
    """

    def __init__(self, app: ASGIApp, keys: Iterable[str], enabled: bool = True) -> None:
        self.app = app
        self.enabled = enabled
        # With no key configured every POST is refused (FaceAPI also refuses to start then).
        self.key_digests = tuple(hashlib.sha256(k.encode("utf-8")).digest() for k in keys)

    def _valid(self, presented: bytes) -> bool:
        digest = hashlib.sha256(presented).digest()
        matched = False
        for key_digest in self.key_digests:
            matched |= hmac.compare_digest(digest, key_digest)
        return matched

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.enabled and _needs_key(scope):
            presented = presented_key(scope)
            if presented is None or not presented.strip():
                message = "missing API key: send an x-api-key header or Authorization: Bearer"
            elif not self._valid(presented):
                message = "invalid API key"
            else:
                message = None
            if message is not None:
                await JSONResponse({"detail": message}, status_code=401)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class RequestBodyMiddleware:
    """422 for a body that does not fit its route's kind, before any parser sees it.

    JSON routes: the body must be JSON (any content type; it is then handed on as
    ``application/json``). A multipart or form body is answered with the route's ``/v1/file/``
    twin where there is one: sending an upload to ``/v1/detect`` is the everyday mix-up.
    Without this, BentoML's parser and FastAPI's error encoder raised on non-UTF-8 bytes (500).

    Multipart routes: the file fields must hold files. BentoML would treat a text value as a URL
    and download it; a face API must never fetch URLs on a client's behalf. Starlette's multipart
    errors become 422.
    """

    def __init__(
        self,
        app: ASGIApp,
        json_routes: Iterable[str],
        file_routes: Mapping[str, tuple[str, ...]],
    ) -> None:
        self.app = app
        self.json_routes = [_route_pattern(t) for t in json_routes]
        # path pattern -> names of its file fields
        self.file_routes = [(_route_pattern(t), fields) for t, fields in file_routes.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _is_api_post(scope):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        fields = next((f for pattern, f in self.file_routes if pattern.fullmatch(path)), None)
        is_json = fields is None and any(p.fullmatch(path) for p in self.json_routes)
        if fields is None and not is_json:
            await self.app(scope, receive, send)  # not ours: the app answers 404/405
            return
        body = await read_body(receive)
        if body is None:
            return  # the client went away
        if is_json:
            errors = self._check_json(path, _content_type(scope), body)
            scope = _with_header(scope, b"content-type", b"application/json")
        else:
            errors = await self._check_upload(scope, body, fields or ())
        if errors:
            await JSONResponse({"detail": errors}, status_code=422)(scope, receive, send)
            return
        await self.app(scope, _replay(body), send)

    def _check_json(self, path: str, content_type: str, body: bytes) -> list[dict[str, Any]]:
        if content_type.startswith(FORM_CONTENT_TYPES):
            twin = FILE_PREFIX + path.removeprefix(API_PREFIX)
            has_twin = any(pattern.fullmatch(twin) for pattern, _ in self.file_routes)
            message = (
                f"{path} takes a JSON body (content-type: application/json) with images as "
                "base64 strings, not a form"
            )
            if has_twin:
                message += f"; to upload image files as multipart/form-data, use {twin}"
            return [{"type": "value_error.content_type", "loc": ["body"], "msg": message}]
        try:
            json.loads(body)
        except json.JSONDecodeError as exc:
            return [{"type": "json_invalid", "loc": ["body", exc.pos], "msg": "JSON decode error"}]
        except UnicodeDecodeError:
            message = "the body is not JSON: it is not text in UTF-8"
            return [{"type": "json_invalid", "loc": ["body", 0], "msg": message}]
        except (ValueError, RecursionError):  # e.g. nesting deeper than the parser's stack
            return [{"type": "json_invalid", "loc": ["body", 0], "msg": "JSON decode error"}]
        return []

    @staticmethod
    async def _check_upload(
        scope: Scope, body: bytes, fields: tuple[str, ...]
    ) -> list[dict[str, Any]]:
        if not _content_type(scope).startswith(FORM_CONTENT_TYPES):
            return [
                {
                    "type": "value_error.content_type",
                    "loc": ["body"],
                    "msg": "expected a multipart/form-data body with the image as a file part",
                }
            ]
        request = Request(scope, _replay(body))
        try:
            form = await request.form()
        except (MultiPartException, HTTPException, ValueError, KeyError) as exc:
            # Inside an app Starlette raises HTTPException(400) for malformed multipart; let
            # through, it left the client waiting (found by the schemathesis test).
            message = exc.detail if isinstance(exc, HTTPException) else str(exc)
            return [{"type": "value_error.multipart", "loc": ["body"], "msg": message}]
        try:
            errors = []
            for name in fields:
                values = form.getlist(name)
                if not values:
                    errors.append(
                        {"type": "missing", "loc": ["body", name], "msg": "Field required"}
                    )
                elif not all(isinstance(v, UploadFile) for v in values):
                    errors.append(
                        {
                            "type": "value_error.upload",
                            "loc": ["body", name],
                            "msg": f"Expected a file upload in {name!r}, received text (URLs are "
                            "never fetched)",
                        }
                    )
            return errors
        finally:
            await form.close()


def _route_pattern(template: str) -> re.Pattern[str]:
    """``/v1/galleries/{gallery}/faces`` as a pattern matching its concrete paths."""
    parts = re.split(r"(\{[^}]+\})", template)
    return re.compile("".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts))


def _content_type(scope: Scope) -> str:
    return (_header(scope, b"content-type") or b"").decode("latin-1").strip().lower()


def _with_header(scope: Scope, name: bytes, value: bytes) -> Scope:
    headers = [(k, v) for k, v in scope.get("headers", ()) if k.lower() != name]
    return {**scope, "headers": [*headers, (name, value)]}


class ErrorShapeMiddleware:
    """BentoML's error bodies rewritten to FastAPI's: 400 validation -> 422 ``{"detail": [...]}``
    with ``loc`` starting at ``"body"``; other ``{"error": msg}`` bodies -> ``{"detail": msg}``;
    plain-text 404/405 -> JSON.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                if message["status"] < 400:
                    start = None
                    await send(message)
                    return
                start = message
                return
            if start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                status, body = rewrite_error(start["status"], b"".join(chunks))
                headers = [
                    (k, v)
                    for k, v in start.get("headers", [])
                    if k.lower() not in (b"content-length", b"content-type")
                ]
                headers += [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ]
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, capture)


def rewrite_error(status: int, body: bytes) -> tuple[int, bytes]:
    """One BentoML error response as (status, body) in the contract's shapes."""
    try:
        payload: Any = json.loads(body) if body else None
    except ValueError:
        payload = None
    if isinstance(payload, dict) and "detail" in payload and "error" not in payload:
        if status == 400 and isinstance(payload["detail"], str):  # FastAPI: unparsable body
            item = {"type": "value_error", "loc": ["body"], "msg": payload["detail"]}
            return 422, json.dumps({"detail": [item]}).encode()
        return status, body  # already in the contract's shape (ours)
    if status == 400 and isinstance(payload, dict) and isinstance(payload.get("detail"), list):
        return 422, json.dumps({"detail": [_fastapi_item(i) for i in payload["detail"]]}).encode()
    if isinstance(payload, list) and payload and isinstance(payload[0], dict):
        payload = payload[0]  # BentoML sometimes wraps the error body in a list
    if isinstance(payload, dict) and "error" in payload:
        message = str(payload["error"])
    elif payload is None:
        message = body.decode("utf-8", "replace").strip() or "error"
    else:
        message = str(payload)
    if status == 400:
        item = {"type": "value_error", "loc": ["body"], "msg": message}
        return 422, json.dumps({"detail": [item]}).encode()
    return status, json.dumps({"detail": message}).encode()


def _fastapi_item(item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        return {"type": "value_error", "loc": ["body"], "msg": str(item)}
    loc = list(item.get("loc") or [])
    kind = str(item.get("type", "value_error"))
    message = str(item.get("msg", "invalid value"))
    if kind == "json_invalid":
        loc, message = [0], "JSON decode error"
    if not loc or loc[0] != "body":
        loc = ["body", *loc]
    return {"type": kind, "loc": loc, "msg": message}
