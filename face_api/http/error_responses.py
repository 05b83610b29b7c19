"""The one place where failures become the contract's HTTP answers, whoever fails.

- ``error_response`` writes an ``ApiError`` (``face_api.ops.errors``) as its JSON response, and
  every answer the edge and the endpoints send is made by it;
- ``api_error`` says which ``ApiError`` any other failure of an endpoint's work is: a request
  model's ``ValidationError`` (422), the deadline (503), a backend service that is down (503);
- ``@handled`` gives every endpoint (the reference's POSTs in ``service.py`` and the galleries'
  routes alike) the request's deadline and turns its failures into their answers: never a 500 or
  a hang;
- ``ErrorShapeMiddleware`` rewrites the error answers BentoML and FastAPI make themselves into
  the same shapes. Ours carry a mark (``OURS``), so it never reads them again; the edge's
  outermost layer takes the mark off every answer.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ParamSpec, TypeVar

import aiohttp
import bentoml
from fastapi.exceptions import RequestValidationError
from fastapi.requests import Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from face_api.http.asgi import API_PREFIX, BODY, ASGIApp, Message, Receive, Scope, Send
from face_api.ops.context import current, since_ms
from face_api.ops.errors import ApiError

T = TypeVar("T")
P = ParamSpec("P")
# Marks an error answer this module made, for ErrorShapeMiddleware (which takes it off).
OURS = b"x-face-api-answer"
log = logging.getLogger("face_api")
# What a call to another BentoML service raises when that service is down or restarting.
BACKEND_ERRORS = (bentoml.exceptions.BentoMLException, aiohttp.ClientError, OSError)


def error_response(error: ApiError, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        error.body(),
        error.status,
        headers={**error.headers(), **(headers or {}), OURS.decode(): "error"},
    )


def validation_error_response(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 for the mounted routes (path, query, body), as every other 422: ``loc``,
    ``msg``, ``type``. FastAPI's own handler echoes each refused ``input``, and a NaN there made
    its answer unencodable: a 500."""
    assert isinstance(exc, RequestValidationError)
    items = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    return error_response(ApiError.invalid_items(items))


def api_error(exc: Exception, timeout_s: float) -> ApiError | None:
    """The ``ApiError`` an endpoint's failure answers; None for a bug (BentoML's 500)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ValidationError):
        items = [
            {"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_input=False, include_url=False)
        ]
        return ApiError.invalid_items(items)
    if isinstance(exc, TimeoutError):  # before BACKEND_ERRORS: TimeoutError is an OSError
        log.warning("request timed out after %s s", timeout_s)
        return ApiError.unavailable(f"request timed out after {timeout_s} s")
    if isinstance(exc, BACKEND_ERRORS):
        log.warning("inference backend failed: %s", type(exc).__name__)
        return ApiError.unavailable(f"inference backend unavailable ({type(exc).__name__})")
    return None


def handled(endpoint: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T | JSONResponse]]:
    """The endpoint's result within the request's deadline, or the contract's error response.

    Its signature and annotations stay the endpoint's own (``functools.wraps``), so BentoML and
    FastAPI read the request schema from it as if it were undecorated.
    """

    @functools.wraps(endpoint)
    async def contract_endpoint(*args: P.args, **kwargs: P.kwargs) -> T | JSONResponse:
        context = current()
        context.add("parse", since_ms(context.started))  # everything before the handler
        try:
            async with asyncio.timeout(context.deadline_s):
                return await endpoint(*args, **kwargs)
        except Exception as exc:
            error = api_error(exc, context.deadline_s or 0)
            if error is None:
                raise
            return error_response(error)
        finally:
            context.handler_ended = time.perf_counter()

    return contract_endpoint


async def send_error(
    error: ApiError, scope: Scope, receive: Receive, send: Send, **headers: str
) -> None:
    """An edge layer's answer: ``error`` in the contract's shape."""
    await error_response(error, headers)(scope, receive, send)


class ErrorShapeMiddleware:
    """BentoML's error bodies rewritten to FastAPI's: 400 validation -> 422 ``{"detail": [...]}``
    with ``loc`` starting at ``"body"``; other ``{"error": msg}`` bodies -> ``{"detail": msg}``;
    plain-text 404/405 -> JSON. Answers ``error_response`` made pass as they are.
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
                headers = message.get("headers", [])
                if message["status"] < 400 or any(k == OURS for k, _ in headers):
                    start = None  # a success, or an error answer of ours: as it is
                    await send(message)
                    return
                start = message
                return
            if start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                status, body = rewrite_error(start["status"], b"".join(chunks), scope.get(BODY))
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


def rewrite_error(status: int, body: bytes, request: bytes | None = None) -> tuple[int, bytes]:
    """One BentoML error response as (status, body) in the contract's shapes; ``request``: the
    request's body, where a JSON syntax error's position is counted."""
    try:
        payload: Any = json.loads(body) if body else None
    except ValueError:
        payload = None
    if isinstance(payload, dict) and "detail" in payload and "error" not in payload:
        if status == 400 and isinstance(payload["detail"], str):  # FastAPI: unparsable body
            return _answer(ApiError.invalid(None, payload["detail"]))
        return status, body  # FastAPI's own ("Not Found"): already the contract's shape
    if status == 400 and isinstance(payload, dict) and isinstance(payload.get("detail"), list):
        items = [_fastapi_item(i, request) for i in payload["detail"]]
        return _answer(ApiError.invalid_items(items))
    if isinstance(payload, list) and payload and isinstance(payload[0], dict):
        payload = payload[0]  # BentoML sometimes wraps the error body in a list
    if isinstance(payload, dict) and "error" in payload:
        message = str(payload["error"])
    elif payload is None:
        message = body.decode("utf-8", "replace").strip() or "error"
    else:
        message = str(payload)
    if status == 400:
        return _answer(ApiError.invalid(None, message))
    return _answer(ApiError(status, message))


def _answer(error: ApiError) -> tuple[int, bytes]:
    return error.status, json.dumps(error.body()).encode()


# pydantic's JSON syntax error: "Invalid JSON: expected value at line 2 column 9".
_JSON_AT = re.compile(r"at line (\d+) column (\d+)$")


def _fastapi_item(item: Any, request: bytes | None = None) -> dict[str, Any]:
    if not isinstance(item, dict):
        return {"type": "value_error", "loc": ["body"], "msg": str(item)}
    loc = list(item.get("loc") or [])
    kind = str(item.get("type", "value_error"))
    message = str(item.get("msg", "invalid value"))
    if kind == "json_invalid":  # where in the body, as FastAPI says it: a character offset
        loc, message = [_json_offset(message, request)], "JSON decode error"
    if not loc or loc[0] != "body":
        loc = ["body", *loc]
    return {"type": kind, "loc": loc, "msg": message}


def _json_offset(message: str, request: bytes | None) -> int:
    at = _JSON_AT.search(message)
    if at is None or request is None or "recursion limit" in message:
        return 0
    line, column = int(at[1]), int(at[2])
    lines = request.decode("utf-8", "replace").split("\n")
    return sum(len(text) + 1 for text in lines[: line - 1]) + column - 1
