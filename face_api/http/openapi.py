"""The OpenAPI document the service publishes: BentoML's, made what clients really get.

BentoML generates ``/docs.json`` from the API methods (FastAPI adds the mounted GET and gallery
routes), but documents its own error bodies (400 ``InvalidArgument``, 404, 500) that the edge never
lets through, and writes things standard tools refuse or misread. ``contract_openapi`` rewrites it:
- 401, 413, 422 (FastAPI's shape), 429 and 503 on every POST, the key's two security schemes;
- OpenAPI 3.1.0, the dialect pydantic's schemas (``anyOf`` with ``null``) are written in;
- BentoML's native POSTs: a ``$ref`` to one named component for each body and answer (BentoML
  writes them inline beside a copy), ``requestBody.required``, their multipart twins' upload
  fields as binary strings and their other form fields as plain values, no ``root_input``;
- every key of an answer listed as required (the server always sends them all);
- operation ids and tags that name what each call does (generated clients name methods by them).
The wire format stays as it is: nothing here changes a request or an answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.responses import Response

from face_api.http.admission import METRICS_PATH, is_public
from face_api.http.asgi import ASGIApp, Receive, Scope, Send

OPENAPI_VERSION = "3.1.0"
ERROR_MESSAGE = "ErrorMessage"
API_KEY_SCHEME = "ApiKey"
# Either carries a key: `x-api-key: KEY`, or `Authorization: Bearer KEY` (BentoML's client's
# `token=`). An operation lists each as an alternative.
SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    API_KEY_SCHEME: {"type": "apiKey", "in": "header", "name": "x-api-key"},
    "Bearer": {"type": "http", "scheme": "bearer", "description": "the same API key"},
}
FACES_TAG, INFO_TAG = "Faces", "Info"
# Error bodies BentoML documents but the edge never sends, and its task queue's (not served).
_BENTOML_ONLY_SCHEMAS = ("InvalidArgument", "NotFound", "InternalServerError", "TaskStatusResponse")
_SCHEMA_REF = "#/components/schemas/"


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
            # pydantic's own, on the gallery routes' 422s: the value refused, the rule's limits.
            "input": {"title": "Input"},
            "ctx": {"type": "object", "title": "Context"},
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
    """BentoML's generated spec, as the contract and standard OpenAPI 3.1 tools want it."""
    spec = json.loads(json.dumps(spec))  # a deep copy, with status codes as strings (as served)
    spec["openapi"] = OPENAPI_VERSION
    spec["info"] = {"title": title, "version": version, "description": description}
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas[ERROR_MESSAGE] = ERROR_MESSAGE_SCHEMA
    schemas.update(VALIDATION_SCHEMAS)
    for name in _BENTOML_ONLY_SCHEMAS:
        schemas.pop(name, None)
    components["securitySchemes"] = SECURITY_SCHEMES
    for path, item in spec.get("paths", {}).items():
        for method, operation in item.items():
            if not path.startswith(api_prefix):  # BentoML's probes and metrics
                operation.setdefault("operationId", path.strip("/"))
                if path == METRICS_PATH:  # an API key, or a metrics key, as a bearer token
                    operation["security"] = [{scheme: []} for scheme in SECURITY_SCHEMES]
                    operation["responses"].setdefault("401", POST_ERRORS["401"])
                continue
            if "x-bentoml-name" in operation:
                _native_api(operation, schemas)
            if is_public(method.upper(), path):
                operation["tags"] = [INFO_TAG]
                continue
            operation["security"] = [{scheme: []} for scheme in SECURITY_SCHEMES]
            if "x-bentoml-name" in operation:  # a native BentoML API: its errors are BentoML's
                operation["responses"] = {"200": operation["responses"]["200"], **POST_ERRORS}
            else:  # a FastAPI route: keep what it documents (404s), add what it lacks
                errors = (
                    POST_ERRORS
                    if method == "post"
                    else {code: POST_ERRORS[code] for code in ("401", "422", "503")}
                )
                for code, response in errors.items():
                    operation["responses"].setdefault(code, response)
    for name in [name for name in schemas if name.startswith("Body_")]:
        _rename_schema(spec, name, _form_name(name.removeprefix("Body_")))
    for schema in schemas.values():
        _binary_uploads(schema)
    _require_every_answer_key(spec)
    return spec


def _native_api(operation: dict[str, Any], schemas: dict[str, Any]) -> None:
    """A BentoML API method: named by its method, its body required, each body and answer a
    reference to one component."""
    operation["operationId"] = operation["x-bentoml-name"]
    operation["tags"] = [FACES_TAG]
    body = operation["requestBody"]
    body["required"] = True
    for media in body["content"].values():
        media["schema"] = _component_ref(media["schema"], schemas, operation["operationId"])
        # BentoML marks form fields as JSON; clients send them, and the server reads them, as
        # plain form values.
        media.pop("encoding", None)
    answer = operation["responses"]["200"]["content"]["application/json"]
    answer["schema"] = _component_ref(answer["schema"], schemas, operation["operationId"])


def _component_ref(schema: dict[str, Any], schemas: dict[str, Any], api: str) -> dict[str, Any]:
    """BentoML writes a body's schema inline and again as a component titled like it
    (``DetectReqBodyIODescriptor``; a form's is ``file_detect__Input``, titled ``Input``): keep
    the component, named for the model (``DetectReqBody``) or the form (``FileDetectForm``)."""
    bentoml_name = schema.get("title", "")
    if bentoml_name == "Input":
        bentoml_name = f"{api}__Input"
    component = schemas.pop(bentoml_name, None) or schema
    component.pop("root_input", None)  # BentoML's own keyword, meaningless to OpenAPI tools
    if bentoml_name.endswith("IODescriptor"):
        name = bentoml_name.removesuffix("IODescriptor")
    else:
        name = _form_name(api)
    component["title"] = name
    schemas[name] = component
    return {"$ref": f"#/components/schemas/{name}"}


def _form_name(operation_id: str) -> str:
    """A multipart form's component: ``file_detect`` -> ``FileDetectForm`` (FastAPI's own would
    be ``Body_file_detect``)."""
    return "".join(part.title() for part in operation_id.split("_")) + "Form"


def _rename_schema(spec: dict[str, Any], old: str, new: str) -> None:
    schemas = spec["components"]["schemas"]
    schemas[new] = schemas.pop(old)
    schemas[new]["title"] = new
    for item in spec["paths"].values():
        for operation in item.values():
            _replace_ref(operation, f"{_SCHEMA_REF}{old}", f"{_SCHEMA_REF}{new}")


def _replace_ref(node: Any, old: str, new: str) -> None:
    if isinstance(node, dict):
        if node.get("$ref") == old:
            node["$ref"] = new
        for value in node.values():
            _replace_ref(value, old, new)
    elif isinstance(node, list):
        for value in node:
            _replace_ref(value, old, new)


def _binary_uploads(schema: dict[str, Any]) -> None:
    """Upload fields as OpenAPI's binary strings. BentoML writes Swagger 2.0's ``type: file``;
    FastAPI writes ``contentMediaType``, which 3.0 clients read as text and send as a text part
    (the server then answers 422 "Expected a file upload")."""
    for field in schema.get("properties", {}).values():
        if field.get("type") == "file" or "contentMediaType" in field:
            field.pop("contentMediaType", None)
            field.update(type="string", format="binary")


def _require_every_answer_key(spec: dict[str, Any]) -> None:
    """Mark every key of every answer's schema required: the server always sends them all, and
    a client generator otherwise types each one "maybe unset". A schema that requests use too
    is left as it is, and so is ``HealthResponse``, whose 200 (``{"status": "ok"}``) has no
    ``detail``; a key marked ``x-sent-when`` comes only when the request asks for it."""
    schemas = spec["components"]["schemas"]
    answers, requests = set(), set()
    for item in spec["paths"].values():
        for operation in item.values():
            for code, response in operation.get("responses", {}).items():
                if code.startswith("2"):
                    answers |= _referenced(response, schemas)
            requests |= _referenced(operation.get("requestBody", {}), schemas)
            requests |= _referenced(operation.get("parameters", []), schemas)
    for name in answers - requests - {"HealthResponse"}:
        properties = schemas[name].get("properties", {})
        if properties:
            schemas[name]["required"] = [
                key for key, field in properties.items() if "x-sent-when" not in field
            ]


def _referenced(node: Any, schemas: dict[str, Any], found: set[str] | None = None) -> set[str]:
    """The component schemas ``node`` refers to, directly or through other components."""
    found = set() if found is None else found
    if isinstance(node, dict):
        ref = node.get("$ref", "")
        if ref.startswith(_SCHEMA_REF):
            name = ref.removeprefix(_SCHEMA_REF)
            if name not in found:
                found.add(name)
                _referenced(schemas[name], schemas, found)
        for value in node.values():
            _referenced(value, schemas, found)
    elif isinstance(node, list):
        for value in node:
            _referenced(value, schemas, found)
    return found


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
