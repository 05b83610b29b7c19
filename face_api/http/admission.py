"""Which requests the edge takes: a configured API key (401), room in flight (429), a body
within the limit (413). Each answers before any later layer, or the endpoint, does work."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from face_api.http.asgi import (
    BODY,
    ASGIApp,
    BodyTooLargeError,
    Receive,
    Scope,
    Send,
    header,
    is_api_post,
    read_body,
    replay,
    send_error,
)
from face_api.ops.errors import ApiError

# What anyone may GET without a key: liveness and what is served (``/v1/health``,
# ``/v1/info/...``), the API's documentation, and BentoML's probes (a kubelet sends no key).
# Everything else needs one, unknown paths included (deny by default): the gallery GETs and
# DELETEs list and remove enrolled people, and ``/metrics`` would name them.
PUBLIC_GET_PATHS = frozenset(
    {"/v1/health", "/", "/docs", "/docs.json", "/livez", "/readyz", "/healthz"}
)
PUBLIC_GET_PREFIXES = ("/v1/info/",)
METRICS_PATH = "/metrics"


def is_public(method: str, path: str) -> bool:
    return method in ("GET", "HEAD") and (
        path in PUBLIC_GET_PATHS or path.startswith(PUBLIC_GET_PREFIXES)
    )


def presented_key(scope: Scope) -> bytes | None:
    """The key a request carries: its ``x-api-key`` header, else ``Authorization: Bearer KEY``
    (what ``bentoml.SyncHTTPClient(url, token=KEY)`` and Prometheus's ``authorization`` send)."""
    key = header(scope, b"x-api-key")
    if key is not None:
        return key
    scheme, _, credentials = (header(scope, b"authorization") or b"").partition(b" ")
    if scheme.lower() == b"bearer":
        return credentials
    return None


class _KeyRing:
    """Keys held as SHA-256 digests, each compared with ``hmac.compare_digest`` and no early
    exit: the time taken depends neither on which key, nor on how much of one matched, nor on
    whether the lengths match."""

    def __init__(self, keys: Iterable[str]) -> None:
        self.digests = tuple(hashlib.sha256(k.encode("utf-8")).digest() for k in keys)

    def holds(self, presented: bytes) -> bool:
        digest = hashlib.sha256(presented).digest()
        matched = False
        for key_digest in self.digests:
            matched |= hmac.compare_digest(digest, key_digest)
        return matched


class ApiKeyMiddleware:
    """401 for every request but the public GETs (``is_public``) without a configured key
    (``x-api-key: KEY`` or ``Authorization: Bearer KEY``). ``GET /metrics`` also takes a
    metrics key (``FACE_METRICS_KEYS``), which opens nothing else."""

    def __init__(
        self,
        app: ASGIApp,
        keys: Iterable[str],
        metrics_keys: Iterable[str] = (),
        enabled: bool = True,
    ) -> None:
        self.app = app
        self.enabled = enabled
        # With no key configured everything keyed is refused (FaceAPI also refuses to start).
        self.keys = _KeyRing(keys)
        self.metrics_keys = _KeyRing(metrics_keys)

    def _admits(self, scope: Scope, presented: bytes) -> bool:
        if self.keys.holds(presented):
            return True
        reads_metrics = scope["method"] in ("GET", "HEAD") and scope["path"] == METRICS_PATH
        return reads_metrics and self.metrics_keys.holds(presented)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.enabled
            and scope["type"] == "http"
            and not is_public(scope["method"], scope["path"])
        ):
            presented = presented_key(scope)
            if presented is None or not presented.strip():
                message = "missing API key: send an x-api-key header or Authorization: Bearer"
            elif not self._admits(scope, presented):
                message = "invalid API key"
            else:
                message = None
            if message is not None:
                await send_error(ApiError(401, message), scope, receive, send)
                return
        await self.app(scope, receive, send)


class ConcurrencyLimitMiddleware:
    """429 for a POST when ``max_in_flight`` POSTs are already being served by this worker.

    BentoML's own ``traffic.max_concurrency`` also counts GETs (a health probe would be refused
    under load) and answers ``{"error": ...}`` from outside our middlewares; this one keeps the
    contract's ``{"detail": ...}`` and tells the client when to retry.
    """

    def __init__(self, app: ASGIApp, max_in_flight: int) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.in_flight = 0  # one event loop per worker: no lock needed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not is_api_post(scope):
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            message = (
                f"too many requests in flight (limit {self.max_in_flight} per worker); retry later"
            )
            await send_error(ApiError(429, message), scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


class BodyLimitMiddleware:
    """413 for a POST body over ``max_bytes``, by Content-Length or while reading a chunked body.

    The body is read here, once and bounded, so nothing downstream can be made to buffer more
    than the limit; the layers after it find it in the scope (``BODY``), BentoML replayed.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not is_api_post(scope):
            await self.app(scope, receive, send)
            return
        declared = header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        try:
            body = await read_body(receive, self.max_bytes)
        except BodyTooLargeError:
            await self._too_large(scope, receive, send)
            return
        if body is not None:  # None: the client went away
            await self.app({**scope, BODY: body}, replay(body), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"request body is over the limit of {self.max_bytes} bytes"
        error = ApiError(413, message)
        await send_error(error, scope, receive, send, connection="close")
