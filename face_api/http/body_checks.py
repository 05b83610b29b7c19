"""422 for a body that does not fit its route's kind, before any parser sees it."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request

from face_api.http.asgi import (
    API_PREFIX,
    BODY,
    FILE_PREFIX,
    FORM_CONTENT_TYPES,
    ASGIApp,
    Receive,
    Scope,
    Send,
    content_type,
    is_api_post,
    replay,
    route_pattern,
    send_error,
    with_header,
)
from face_api.ops.errors import ApiError


class RequestBodyMiddleware:
    """422 for a body that does not fit its route's kind, before any parser sees it.

    JSON routes: the body must be JSON (any content type; it is then handed on as
    ``application/json``). A multipart or form body is answered with the route's ``/v1/file/``
    twin where there is one: sending an upload to ``/v1/detect`` is the everyday mix-up.
    Without this, BentoML's parser and FastAPI's error encoder raised on non-UTF-8 bytes (500).

    Multipart routes: the file fields must hold files. BentoML would treat a text value as a URL
    and download it; a face API must never fetch URLs on a client's behalf. Starlette's multipart
    errors become 422.

    It checks the body the body limit's layer read (``BODY`` in the scope).
    """

    def __init__(
        self,
        app: ASGIApp,
        json_routes: Iterable[str],
        file_routes: Mapping[str, tuple[str, ...]],
    ) -> None:
        self.app = app
        self.json_routes = [route_pattern(t) for t in json_routes]
        # path pattern -> names of its file fields
        self.file_routes = [(route_pattern(t), fields) for t, fields in file_routes.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not is_api_post(scope):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        fields = next((f for pattern, f in self.file_routes if pattern.fullmatch(path)), None)
        is_json = fields is None and any(p.fullmatch(path) for p in self.json_routes)
        if fields is None and not is_json:
            await self.app(scope, receive, send)  # not ours: the app answers 404/405
            return
        body: bytes = scope[BODY]
        if is_json:
            errors = self._check_json(path, content_type(scope), body)
            scope = with_header(scope, b"content-type", b"application/json")
        else:
            errors = await self._check_upload(scope, body, fields or ())
        if errors:
            await send_error(ApiError.invalid_items(errors), scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _check_json(self, path: str, kind: str, body: bytes) -> list[dict[str, Any]]:
        if kind.startswith(FORM_CONTENT_TYPES):
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
        if not content_type(scope).startswith(FORM_CONTENT_TYPES):
            return [
                {
                    "type": "value_error.content_type",
                    "loc": ["body"],
                    "msg": "expected a multipart/form-data body with the image as a file part",
                }
            ]
        request = Request(scope, replay(body))
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
