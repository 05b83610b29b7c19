"""Which requests the edge takes: a configured API key (401), a path spelled as a route spells it
(404), room in flight (429: requests, and their bodies' bytes), a body within the limit (413), a
body of the kind its route takes (422). Each answers before any later layer, or the endpoint,
does work."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
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
    BodyTooLargeError,
    Receive,
    Scope,
    Send,
    header,
    is_api_post,
    read_body,
    replay,
    route_pattern,
)
from face_api.http.error_responses import send_error
from face_api.ops.errors import ApiError
from face_api.ops.limits import FILENAME_MAX_BYTES

# What anyone may GET without a key: liveness and what is served (``/v1/health``,
# ``/v1/info/...``), the API's documentation (``/schema.json`` is BentoML's, which its Python
# client reads before its first call), and BentoML's probes (a kubelet sends no key).
# Everything else needs one, unknown paths included (deny by default): the gallery GETs and
# DELETEs list and remove enrolled people, and ``/metrics`` would name them.
PUBLIC_GET_PATHS = frozenset(
    {"/v1/health", "/", "/docs", "/docs.json", "/schema.json", "/livez", "/readyz", "/healthz"}
)
# The docs page's own assets (Swagger UI), which BentoML serves under /static_content/.
PUBLIC_GET_PREFIXES = ("/v1/info/", "/static_content/")
METRICS_PATH = "/metrics"
JSON_CONTENT_TYPE = "application/json"


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
        allowed_hosts: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.enabled = enabled
        # With no key configured everything keyed is refused (FaceAPI also refuses to start).
        self.keys = _KeyRing(keys)
        self.metrics_keys = _KeyRing(metrics_keys)
        self.allowed_hosts = {h.lower() for h in allowed_hosts} | LOOPBACK_NAMES

    def _admits(self, scope: Scope, presented: bytes) -> bool:
        if self.keys.holds(presented):
            return True
        reads_metrics = scope["method"] in ("GET", "HEAD") and scope["path"] == METRICS_PATH
        return reads_metrics and self.metrics_keys.holds(presented)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.enabled and scope["type"] == "http" and (refusal := self._unkeyed(scope)):
            await send_error(ApiError(403, refusal), scope, receive, send)
            return
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

    def _unkeyed(self, scope: Scope) -> str | None:
        """With key checks off, why a request is refused (None: served). Only this machine's
        names and addresses, and FACE_ALLOWED_HOSTS, are served: a page of any site can make a
        browser send a request, and a name it controls can point at this machine (DNS
        rebinding). A browser's request from another site says so (``Origin``,
        ``Sec-Fetch-Site``) and is refused."""
        host = (header(scope, b"host") or b"").decode("latin-1").strip().lower()
        name = _host_name(host)
        if name not in self.allowed_hosts and not _is_address(name):
            return (
                f"Host {host!r} is not served with key checks off (FACE_API_AUTH=off): use an "
                "address, or list the name in FACE_ALLOWED_HOSTS"
            )
        site = (header(scope, b"sec-fetch-site") or b"").decode("latin-1").strip().lower()
        origin = (header(scope, b"origin") or b"").decode("latin-1").strip().lower()
        if site == "cross-site" or (origin and origin.partition("://")[2] != host):
            return "a browser's request from another site is refused with key checks off"
        return None


LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def _host_name(host: str) -> str:
    """A Host header's name or address, without its port (``[::1]:3000`` is ``::1``)."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class ExactPathMiddleware:
    """404 for a path not spelled as a route spells it: a trailing slash, an empty segment, or a
    literal ``.`` or ``..`` segment, whatever the method.

    The routers would redirect a trailing slash (307, which keeps the method) to the path without
    it, and clients resolve dot segments before sending: ``DELETE .../faces/..`` became ``DELETE
    /v1/galleries/G/``, redirected and followed to ``DELETE /v1/galleries/G``: the whole gallery
    dropped. No redirect ever changes which resource a request acts on. A percent-encoded dot
    (``%2E%2E``) is data, not a segment: a subject named ``..`` by an earlier version stays
    erasable by its name."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not _exact(scope.get("raw_path") or scope["path"]):
            message = "no such route: paths have no trailing slash, empty or dot segments"
            await send_error(ApiError.not_found(message), scope, receive, send)
            return
        await self.app(scope, receive, send)


def _exact(path: str | bytes) -> bool:
    raw = path.encode("latin-1") if isinstance(path, str) else path
    if raw == b"/":
        return True
    segments = raw.split(b"/")[1:]
    return all(segment not in (b"", b".", b"..") for segment in segments)


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
    """413 for a POST body over ``max_bytes``, by Content-Length or while reading a chunked body;
    429 when the bodies this worker holds would pass ``max_bytes_in_flight``.

    The body is read here, once and bounded, so nothing downstream can be made to buffer more
    than the limit; the layers after it find it in the scope (``BODY``), BentoML replayed. A body
    is held (parsed, decoded, sent to the runner: about six times its size in memory at the peak,
    measured) until its request is answered, so the bodies in flight are bounded by their bytes,
    not only by their number: 16 bodies of 18 MiB took a worker from 209 MB to 1,994 MB. A
    declared length is reserved before any byte is read; a chunked body as its chunks arrive.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, max_bytes_in_flight: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_bytes_in_flight = max_bytes_in_flight
        self.bytes_in_flight = 0  # one event loop per worker: no lock needed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not is_api_post(scope):
            await self.app(scope, receive, send)
            return
        declared = header(scope, b"content-length")
        size = int(declared) if declared is not None and declared.isdigit() else None
        if size is not None and size > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        held = 0

        def hold(count: int) -> None:
            nonlocal held
            if self.bytes_in_flight + count > self.max_bytes_in_flight:
                raise _BodiesFullError
            self.bytes_in_flight += count
            held += count

        try:
            hold(size or 0)
            body = await read_body(receive, self.max_bytes, None if size is not None else hold)
            if body is not None:  # None: the client went away
                await self.app({**scope, BODY: body}, replay(body), send)
        except BodyTooLargeError:
            await self._too_large(scope, receive, send)
        except _BodiesFullError:
            message = (
                f"too many request bytes in flight (limit {self.max_bytes_in_flight} per worker, "
                "FACE_MAX_BODY_BYTES_IN_FLIGHT); retry later"
            )
            await send_error(ApiError(429, message), scope, receive, send, connection="close")
        finally:
            self.bytes_in_flight -= held

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"request body is over the limit of {self.max_bytes} bytes"
        error = ApiError(413, message)
        await send_error(error, scope, receive, send, connection="close")


class _BodiesFullError(Exception):
    pass


class RequestBodyMiddleware:
    """422 for a body that does not fit its route's kind, before any parser sees it.

    JSON routes: the body must be sent as ``application/json`` and be text, to be parsed as JSON
    by the route. A multipart or form body is answered with the route's ``/v1/file/`` twin where
    there is one: sending an upload to ``/v1/detect`` is the everyday mix-up.
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
        # One pattern for every JSON route: one match a request.
        self.json_routes = re.compile(
            "|".join(f"(?:{route_pattern(t).pattern})" for t in json_routes) or "(?!)",
            re.DOTALL,
        )
        # path pattern -> names of its file fields
        self.file_routes = [(route_pattern(t), fields) for t, fields in file_routes.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not is_api_post(scope):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        fields = None
        for pattern, names in self.file_routes:
            if pattern.fullmatch(path):
                fields = names
                break
        is_json = fields is None and self.json_routes.fullmatch(path) is not None
        if fields is None and not is_json:
            await self.app(scope, receive, send)  # not ours: the app answers 404/405
            return
        body: bytes = scope[BODY]
        kind = (header(scope, b"content-type") or b"").decode("latin-1").strip().lower()
        if not is_json:
            errors = await self._check_upload(kind, scope, body, fields or ())
        elif kind.startswith(FORM_CONTENT_TYPES):
            errors = [self._form_sent_to(path)]
        elif kind.partition(";")[0].strip() != JSON_CONTENT_TYPE:
            # A browser sends text/plain (or no type) across sites without asking first: JSON
            # routes take only what it must ask for, so no page of another site posts to them.
            message = (
                f"{path} takes a JSON body sent as content-type: application/json "
                f"(got {kind or 'none'})"
            )
            errors = [{"type": "value_error.content_type", "loc": ["body"], "msg": message}]
        else:
            errors = []
            # Parsed once, by the route's own parser (its JSON errors become 422s in
            # error_responses.py); only text that is no UTF-8 is stopped here: BentoML's parser
            # and FastAPI's error encoder raised on it (500).
            try:
                body.decode("utf-8")
            except UnicodeDecodeError:
                message = "the body is not JSON: it is not text in UTF-8"
                errors = [{"type": "json_invalid", "loc": ["body", 0], "msg": message}]
        if errors:
            await send_error(ApiError.invalid_items(errors), scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _form_sent_to(self, path: str) -> dict[str, Any]:
        twin = FILE_PREFIX + path.removeprefix(API_PREFIX)
        has_twin = any(pattern.fullmatch(twin) for pattern, _ in self.file_routes)
        message = (
            f"{path} takes a JSON body (content-type: application/json) with images as "
            "base64 strings, not a form"
        )
        if has_twin:
            message += f"; to upload image files as multipart/form-data, use {twin}"
        return {"type": "value_error.content_type", "loc": ["body"], "msg": message}

    @staticmethod
    async def _check_upload(
        kind: str, scope: Scope, body: bytes, fields: tuple[str, ...]
    ) -> list[dict[str, Any]]:
        if not kind.startswith(FORM_CONTENT_TYPES):
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
            # Starlette raises HTTPException(400) for malformed multipart, meant for an app's
            # exception handler; raised out of a middleware it left the client waiting (found by
            # the schemathesis test): it is answered here.
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
                elif problem := next(filter(None, (_filename_problem(v) for v in values)), None):
                    errors.append(
                        {"type": "value_error.filename", "loc": ["body", name], "msg": problem}
                    )
            return errors
        finally:
            await form.close()


def _filename_problem(upload: UploadFile) -> str | None:
    """Why a file part's name cannot be taken, or None. BentoML names the upload's temporary
    file after it: a name over the file system's limit was a 500."""
    name = upload.filename or ""
    if "\x00" in name:
        return "the file's name holds a NUL character"
    if len(os.path.basename(name).encode("utf-8", "surrogatepass")) > FILENAME_MAX_BYTES:
        return f"the file's name is over {FILENAME_MAX_BYTES} bytes (UTF-8)"
    return None
