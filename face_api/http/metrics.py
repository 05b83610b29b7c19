"""Request metrics labelled by route template, never by the path a client sent.

BentoML's traffic middleware (``RunnerTrafficMetricsMiddleware``, which BentoML 1.4 puts outermost
on every service's app) labels every request on ``/metrics`` with its raw path, 401s and
404s included: ``/v1/galleries/watchlist/subjects/Jane%20Doe`` put an enrolled person's name on
an open page, and 2,000 made-up paths grew it from 28 KB to 7.5 MB, one label set each, kept for
the process's life. ``label_requests_by_route`` swaps in a subclass that hands BentoML's code the
route's template instead (``/v1/galleries/{gallery}/subjects/{subject}``), and ``unmatched`` for
any path no route serves: the label sets are as many as the routes, whatever clients send.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bentoml._internal.server.http import instruments

from face_api.http.asgi import ASGIApp, Receive, Scope, Send, route_pattern

UNMATCHED = "unmatched"
# Where the labelled scope keeps the real path for the app inside BentoML's middleware.
_REAL_PATH = "face_api.real_path"
_BENTOML_MIDDLEWARE = instruments.RunnerTrafficMetricsMiddleware


class RouteLabels:
    """A path's route template, or ``UNMATCHED``."""

    def __init__(self, templates: Iterable[str]) -> None:
        templates = sorted(set(templates))
        self.exact = {t for t in templates if "{" not in t}
        self.patterns = [(route_pattern(t), t) for t in templates if "{" in t]

    def __call__(self, path: str) -> str:
        if path in self.exact:
            return path
        return next((t for pattern, t in self.patterns if pattern.fullmatch(path)), UNMATCHED)


_labels = RouteLabels(())


class _RealPath:
    """Gives the app inside BentoML's middleware the path the client sent back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if _REAL_PATH in scope:
            scope = {**scope, "path": scope[_REAL_PATH]}
        await self.app(scope, receive, send)


class RouteTemplateMetricsMiddleware(_BENTOML_MIDDLEWARE):
    """BentoML's own traffic metrics (names, buckets, multiprocess gauges), labelled by route."""

    def __init__(self, app: ASGIApp, **options: Any) -> None:
        super().__init__(_RealPath(app), **options)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope = {**scope, "path": _labels(scope["path"]), _REAL_PATH: scope["path"]}
        await super().__call__(scope, receive, send)


def label_requests_by_route(templates: Iterable[str]) -> None:
    """Every HTTP app BentoML builds in this process after this call labels its request metrics
    by these route templates. BentoML looks its middleware class up in ``instruments`` when it
    builds an app, which it does after importing the service."""
    global _labels
    _labels = RouteLabels(templates)
    instruments.RunnerTrafficMetricsMiddleware = RouteTemplateMetricsMiddleware
