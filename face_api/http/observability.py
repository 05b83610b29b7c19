"""The edge's observability: every answer's request id, and its stage timings."""

from __future__ import annotations

import re

from face_api.http.asgi import ASGIApp, Message, Receive, Scope, Send, header, is_api_post
from face_api.ops import timing
from face_api.ops.logs import request_id
from face_api.ops.timing import SERVER_TIMING, Timings, since_ms

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
        given = header(scope, REQUEST_ID)
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
        if not is_api_post(scope):
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
