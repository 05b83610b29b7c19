"""The edge: the ASGI layers every request passes, outermost first, as one list.

``service.py`` adds them in this order and the README ("How it works") describes it:

1. ``RequestIdMiddleware``: every answer gets its ``x-request-id``, and the access log names it;
2. ``ServerTimingMiddleware``: every POST's answer gets its ``Server-Timing``;
3. ``DocsMiddleware``: ``/docs`` and ``/docs.json``, which need no key;
4. ``ApiKeyMiddleware``: 401 before any body is read, on every path but the public GETs;
5. ``ConcurrencyLimitMiddleware``: 429; after the key, so a slow upload holds a slot and the
   buffered bodies are bounded too;
6. ``BodyLimitMiddleware``: 413; reads the body, once;
7. ``RequestBodyMiddleware``: 422 for a body of the wrong kind for its route;
8. ``RequestDeadline``: the deadline ``@handled`` enforces on the endpoint's work;
9. ``ErrorShapeMiddleware``: BentoML's own error bodies in the contract's shapes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from face_api.http.admission import (
    ApiKeyMiddleware,
    BodyLimitMiddleware,
    ConcurrencyLimitMiddleware,
)
from face_api.http.body_checks import RequestBodyMiddleware
from face_api.http.error_shapes import ErrorShapeMiddleware
from face_api.http.handling import RequestDeadline
from face_api.http.observability import RequestIdMiddleware, ServerTimingMiddleware
from face_api.http.openapi import DocsMiddleware
from face_api.ops.settings import Settings

Layer = tuple[type, dict[str, Any]]  # a middleware class and its keyword arguments


def edge_layers(
    settings: Settings,
    *,
    docs: Callable[[], dict[str, Any]],
    title: str,
    version: str,
    json_routes: Sequence[str],
    file_routes: Mapping[str, tuple[str, ...]],
) -> list[Layer]:
    """The layers in order, outermost first, each with what it is built from."""
    return [
        (RequestIdMiddleware, {}),
        (ServerTimingMiddleware, {}),
        (DocsMiddleware, {"build": docs, "title": title, "version": version}),
        (
            ApiKeyMiddleware,
            {
                "keys": settings.load_api_keys(),
                "metrics_keys": settings.load_metrics_keys(),
                "enabled": settings.auth_enabled,
            },
        ),
        (ConcurrencyLimitMiddleware, {"max_in_flight": settings.max_concurrency}),
        (BodyLimitMiddleware, {"max_bytes": settings.max_body_bytes}),
        (RequestBodyMiddleware, {"json_routes": json_routes, "file_routes": file_routes}),
        (RequestDeadline, {"timeout_s": settings.request_timeout_s}),
        (ErrorShapeMiddleware, {}),
    ]
