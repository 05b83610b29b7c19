"""BentoML's own error answers rewritten to the contract's shapes (the errors our code raises are
already in them: ``face_api/http/errors.py``)."""

from __future__ import annotations

import json
from typing import Any

from face_api.http.asgi import API_PREFIX, ASGIApp, Message, Receive, Scope, Send
from face_api.ops.errors import ApiError


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
            return _answer(ApiError.invalid(None, payload["detail"]))
        return status, body  # already in the contract's shape (ours)
    if status == 400 and isinstance(payload, dict) and isinstance(payload.get("detail"), list):
        return _answer(ApiError.invalid_items([_fastapi_item(i) for i in payload["detail"]]))
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
