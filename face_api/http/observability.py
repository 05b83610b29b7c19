"""What the edge tells of each request: its context (``face_api/ops/context.py``) and what the
answer says of it (its ``x-request-id``, a POST's ``Server-Timing``), and the request metrics on
``/metrics``, the access log and the traces, which name the route's template, never the path a
client sent.

BentoML's traffic middleware (``RunnerTrafficMetricsMiddleware``, which BentoML 1.4 puts outermost
on every service's app) labels every request with its raw path, 401s and 404s included:
``/v1/galleries/watchlist/subjects/Jane%20Doe`` put an enrolled person's name on a page, and 2,000
made-up paths grew it from 28 KB to 7.5 MB, one label set each, kept for the process's life.
``label_requests_by_route`` swaps in a subclass that hands BentoML's code the route's template
instead (``/v1/galleries/{gallery}/subjects/{subject}``), and ``unmatched`` for any path no route
serves: the label sets are as many as the routes, whatever clients send. The template stays the
path through BentoML's tracing and access log too (``DELETE /v1/galleries/{gallery}/subjects/
{subject}``: no enrolled person's name in a log line); the first of the edge's own layers gives
the app the path the client sent back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from face_api.http.asgi import (
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    header,
    is_api_post,
    route_pattern,
)
from face_api.ops import bentoml_private
from face_api.ops.context import SERVER_TIMING, RequestContext, serving, since_ms

REQUEST_ID = b"x-request-id"
# Headers the service's layers pass each other (``error_responses.OURS``), taken off every answer.
INTERNAL_HEADERS = b"x-face-api-"
# A client's id is kept when it is a plain token; anything else (spaces, quotes, control
# characters: log injection) is replaced by the server's own.
_CLIENT_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:/+=@-]{1,128}$")


def _trace_id() -> str:
    """The id BentoML's access log shows for this request (``trace=...``): its trace id."""
    from opentelemetry import trace

    return format(trace.get_current_span().get_span_context().trace_id, "032x")


class RequestContextMiddleware:
    """Makes each request's context: its id (the client's ``x-request-id``, else the id
    BentoML made for the request, its trace id), named in the access log and on every answer;
    the deadline ``@handled`` keeps; and the stages a POST under /v1/ answers in
    ``Server-Timing``, with ``response`` (serializing the answer) and ``total``, in ms."""

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":  # no websocket route (refused earlier with metrics on)
            await send({"type": "websocket.close", "code": WEBSOCKET_POLICY_VIOLATION})
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _REAL_PATH in scope:  # the metrics, traces and access log had the route's template
            scope = {**scope, "path": scope[_REAL_PATH]}
        given = header(scope, REQUEST_ID)
        valid = given is not None and _CLIENT_REQUEST_ID.match(given)
        context = RequestContext(
            id=given.decode("ascii") if valid else _trace_id(), deadline_s=self.timeout_s
        )
        timed = is_api_post(scope)

        async def send_with_context(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = []
                for key, value in message.get("headers", []):
                    # ours alone, or internal: never to the client
                    if key != REQUEST_ID and not key.lower().startswith(INTERNAL_HEADERS):
                        headers.append((key, value))
                headers.append((REQUEST_ID, context.id.encode()))
                if timed:
                    if context.handler_ended is not None:
                        context.add("response", since_ms(context.handler_ended))
                    context.add("total", since_ms(context.started))
                    headers.append((SERVER_TIMING, context.server_timing()))
                message = {**message, "headers": headers}
            await send(message)

        with serving(context):
            await self.app(scope, receive, send_with_context)


# -- request metrics by route ---------------------------------------------------------------
UNMATCHED = "unmatched"
WEBSOCKET_POLICY_VIOLATION = 1008  # the close code a refused handshake carries (RFC 6455)
# Where the labelled scope keeps the real path, for the edge's first layer
# (``RequestContextMiddleware``) to give back to the app.
_REAL_PATH = "face_api.real_path"
_BENTOML_MIDDLEWARE = bentoml_private.traffic_metrics_middleware()


class RouteLabels:
    """A path's route template, or ``UNMATCHED``."""

    def __init__(self, templates: Iterable[str]) -> None:
        templates = sorted(set(templates))
        self.exact = {t for t in templates if "{" not in t}
        # labelled without convertors: ``{subject:anytext}`` is ``{subject}``
        self.patterns = [
            (route_pattern(t), re.sub(r"\{(\w+):\w+\}", r"{\1}", t)) for t in templates if "{" in t
        ]

    def __call__(self, path: str) -> str:
        if path in self.exact:
            return path
        return next((t for pattern, t in self.patterns if pattern.fullmatch(path)), UNMATCHED)


_labels = RouteLabels(())


class RouteTemplateMetricsMiddleware(_BENTOML_MIDDLEWARE):
    """BentoML's own traffic metrics (names, buckets, multiprocess gauges), labelled by route.

    Outermost in every service's app, it also refuses every websocket handshake (the service has
    no websocket route) before any metric, trace or log sees its path: 2,000 handshakes to made-up
    paths, each refused 403, had grown /metrics by one label set each."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": WEBSOCKET_POLICY_VIOLATION})
            return
        if scope["type"] == "http":
            scope = {**scope, "path": _labels(scope["path"]), _REAL_PATH: scope["path"]}
        await super().__call__(scope, receive, send)


def label_requests_by_route(templates: Iterable[str]) -> None:
    """Every HTTP app BentoML builds in this process after this call labels its request metrics
    by these route templates. BentoML looks its middleware class up when it builds an app, which
    it does after importing the service (``face_api/ops/bentoml_private.py``)."""
    global _labels
    _labels = RouteLabels(templates)
    bentoml_private.use_traffic_metrics_middleware(RouteTemplateMetricsMiddleware)
