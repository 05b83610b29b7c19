"""The edge: the ASGI layers every request passes, outermost first, as one list.

``service.py`` adds them in this order and docs/architecture.md ("How it works") describes it:

1. ``RequestContextMiddleware``: the request's context (id, deadline, timings); every answer
   gets its ``x-request-id`` (the access log names it), every POST's its ``Server-Timing``;
2. ``DocsMiddleware``: ``/docs`` and ``/docs.json``, which need no key;
3. ``ApiKeyMiddleware``: 401 before any body is read, on every path but the public GETs (with
   key checks off: 403 for a Host that is not this machine's, or a browser's cross-site request);
4. ``ExactPathMiddleware``: 404 for a trailing slash, an empty or a dot segment (never a
   redirect that changes the resource a request acts on);
5. ``ConcurrencyLimitMiddleware``: 429; after the key, so a slow upload holds a slot and the
   buffered bodies are bounded too;
6. ``BodyLimitMiddleware``: 413, and 429 past the bytes in flight; reads the body, once;
7. ``RequestBodyMiddleware``: 422 for a body of the wrong kind for its route;
8. ``ErrorShapeMiddleware``: BentoML's own error bodies in the contract's shapes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from face_api.http.admission import (
    ApiKeyMiddleware,
    BodyLimitMiddleware,
    ConcurrencyLimitMiddleware,
    ExactPathMiddleware,
    RequestBodyMiddleware,
)
from face_api.http.error_responses import ErrorShapeMiddleware
from face_api.http.observability import RequestContextMiddleware
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
        (RequestContextMiddleware, {"timeout_s": settings.request_timeout_s}),
        (DocsMiddleware, {"build": docs, "title": title, "version": version}),
        (
            ApiKeyMiddleware,
            {
                "keys": settings.load_api_keys(),
                "metrics_keys": settings.load_metrics_keys(),
                "enabled": settings.auth_enabled,
                "allowed_hosts": settings.allowed_hosts,
            },
        ),
        (ExactPathMiddleware, {}),
        (ConcurrencyLimitMiddleware, {"max_in_flight": settings.max_concurrency}),
        (
            BodyLimitMiddleware,
            {
                "max_bytes": settings.max_body_bytes,
                "max_bytes_in_flight": settings.max_body_bytes_in_flight,
            },
        ),
        (RequestBodyMiddleware, {"json_routes": json_routes, "file_routes": file_routes}),
        (ErrorShapeMiddleware, {}),
    ]
