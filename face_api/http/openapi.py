"""The OpenAPI schema the service publishes, with the contract's error responses.

BentoML generates ``/docs.json`` from the API methods, but documents its own error bodies
(400 ``InvalidArgument``, 404, 500) that our middlewares never let through. ``contract_openapi``
rewrites that spec to what clients really get: 401, 413, 422 (FastAPI's shape), 429 and 503 on
every POST, the ``x-api-key`` security scheme, and the service's own title and version.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.responses import Response

from face_api.http.middleware import PUBLIC_GET_PREFIXES, ASGIApp, Receive, Scope, Send

API_KEY_SCHEME = "ApiKey"
ERROR_MESSAGE = "ErrorMessage"
_BENTOML_ERRORS = ("InvalidArgument", "NotFound", "InternalServerError")


def _json_response(description: str, schema_ref: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_ref}"}}},
    }


POST_ERRORS: dict[str, dict[str, Any]] = {
    "401": _json_response("Missing or unknown x-api-key", ERROR_MESSAGE),
    "413": _json_response("Request body over the size limit", ERROR_MESSAGE),
    "422": _json_response("Invalid input, naming the field", "HTTPValidationError"),
    "429": _json_response("Too many requests in flight; retry later", ERROR_MESSAGE),
    "503": _json_response("Inference backend unavailable or timed out; retry later", ERROR_MESSAGE),
}
ERROR_MESSAGE_SCHEMA = {
    "type": "object",
    "title": ERROR_MESSAGE,
    "required": ["detail"],
    "properties": {"detail": {"type": "string", "title": "Detail"}},
}
VALIDATION_SCHEMAS = {
    "ValidationError": {
        "type": "object",
        "title": "ValidationError",
        "required": ["loc", "msg", "type"],
        "properties": {
            "loc": {
                "type": "array",
                "title": "Location",
                "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            },
            "msg": {"type": "string", "title": "Message"},
            "type": {"type": "string", "title": "Error Type"},
        },
    },
    "HTTPValidationError": {
        "type": "object",
        "title": "HTTPValidationError",
        "required": ["detail"],
        "properties": {
            "detail": {
                "type": "array",
                "title": "Detail",
                "items": {"$ref": "#/components/schemas/ValidationError"},
            }
        },
    },
}


def contract_openapi(
    spec: dict[str, Any], *, title: str, version: str, description: str, api_prefix: str = "/v1/"
) -> dict[str, Any]:
    """BentoML's generated spec, with the error responses and auth of the contract."""
    spec = json.loads(json.dumps(spec))  # a deep copy, with status codes as strings (as served)
    spec["info"] = {"title": title, "version": version, "description": description}
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas[ERROR_MESSAGE] = ERROR_MESSAGE_SCHEMA
    schemas.update(VALIDATION_SCHEMAS)
    for name in _BENTOML_ERRORS:
        schemas.pop(name, None)
    components["securitySchemes"] = {
        API_KEY_SCHEME: {"type": "apiKey", "in": "header", "name": "x-api-key"}
    }
    for path, item in spec.get("paths", {}).items():
        if not path.startswith(api_prefix):
            continue
        for method, operation in item.items():
            if method == "get" and path.startswith(PUBLIC_GET_PREFIXES):
                continue
            operation["security"] = [{API_KEY_SCHEME: []}]
            if "x-bentoml-name" in operation:  # a native BentoML API: its errors are BentoML's
                operation["responses"] = {"200": operation["responses"]["200"], **POST_ERRORS}
                _strip_bentoml_markers(operation.get("requestBody", {}))
            else:  # a FastAPI route: keep what it documents (404s), add what it lacks
                errors = (
                    POST_ERRORS
                    if method == "post"
                    else {code: POST_ERRORS[code] for code in ("401", "422", "503")}
                )
                for code, response in errors.items():
                    operation["responses"].setdefault(code, response)
    return spec


def _strip_bentoml_markers(request_body: dict[str, Any]) -> None:
    """BentoML's non-standard ``root_input`` keyword is meaningless to OpenAPI tools."""
    for media in request_body.get("content", {}).values():
        media.get("schema", {}).pop("root_input", None)


# The Swagger UI, from the copy of its assets BentoML serves at /static_content: no request leaves
# the server (BentoML's own page at / loads Google Tag Manager), and the validator badge that
# Swagger UI fetches from validator.swagger.io by default is off.
DOCS_PAGE = """<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="UTF-8">
    <title>{title} {version}: API docs</title>
    <link rel="stylesheet" type="text/css" href="./static_content/swagger-ui.css">
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="./static_content/swagger-ui-bundle.js" charset="UTF-8"></script>
    <script src="./static_content/swagger-ui-standalone-preset.js" charset="UTF-8"></script>
    <script>
      window.onload = function () {{
        window.ui = SwaggerUIBundle({{
          url: "./docs.json",
          dom_id: "#swagger-ui",
          deepLinking: true,
          validatorUrl: null,
          presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
          layout: "StandaloneLayout",
        }});
      }};
    </script>
  </body>
</html>
"""
DOCS_PATHS = ("/", "/docs")


class DocsMiddleware:
    """The API's documentation: ``GET /docs.json``, the contract's spec (built once from
    BentoML's), and ``GET /docs`` (and ``/``), the Swagger UI for it with the service's name and
    version, from local assets only."""

    def __init__(
        self, app: ASGIApp, build: Callable[[], dict[str, Any]], title: str, version: str
    ) -> None:
        self.app = app
        self.build = build
        self.page = DOCS_PAGE.format(title=title, version=version).encode()
        self._spec: bytes | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        if scope["path"] == "/docs.json":
            if self._spec is None:
                self._spec = json.dumps(self.build()).encode()
            await Response(self._spec, media_type="application/json")(scope, receive, send)
        elif scope["path"] in DOCS_PATHS:
            await Response(self.page, media_type="text/html")(scope, receive, send)
        else:
            await self.app(scope, receive, send)
