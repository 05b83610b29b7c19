"""What the edge's layers share: ASGI types, and reading a request's headers and body."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

API_PREFIX = "/v1/"
FILE_PREFIX = "/v1/file/"  # the multipart twins of the JSON routes
FORM_CONTENT_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
# Where the body limit's layer leaves the body it read, for the layers after it: it is read from
# the client once.
BODY = "face_api.body"


def is_api_post(scope: Scope) -> bool:
    return (
        scope["type"] == "http"
        and scope["method"] == "POST"
        and scope["path"].startswith(API_PREFIX)
    )


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value
    return None


def route_pattern(template: str) -> re.Pattern[str]:
    """``/v1/galleries/{gallery}/faces`` as a pattern matching its concrete paths (a parameter
    with a convertor, ``{name:path}``, takes slashes too)."""
    parts = re.split(r"(\{[^}]+\})", template)
    return re.compile(
        "".join(
            (".+" if ":" in p else "[^/]+") if p.startswith("{") else re.escape(p) for p in parts
        ),
        re.DOTALL,
    )


class BodyTooLargeError(Exception):
    pass


async def read_body(
    receive: Receive, max_bytes: int, on_chunk: Callable[[int], None] | None = None
) -> bytes | None:
    """The whole request body, or None when the client disconnected first; ``on_chunk`` is told
    each chunk's size as it arrives (and may raise to stop reading).

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
        if size > max_bytes:
            raise BodyTooLargeError
        if on_chunk is not None:
            on_chunk(len(chunk))
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replay(body: bytes) -> Receive:
    """A ``receive`` that hands over an already read body once, then waits for disconnect."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive
