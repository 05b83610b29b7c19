"""The one place where failures become the contract's HTTP answers.

``error_response`` writes an ``ApiError`` (``face_api.ops.errors``) as its JSON response;
``api_error`` says which ``ApiError`` any other failure of an endpoint's work is: a request
model's ``ValidationError`` (422), the deadline (503), a backend service that is down (503).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import aiohttp
import bentoml
from fastapi.exceptions import RequestValidationError
from fastapi.requests import Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from face_api.ops.errors import ApiError

log = logging.getLogger("face_api")
# What a call to another BentoML service raises when that service is down or restarting.
BACKEND_ERRORS = (bentoml.exceptions.BentoMLException, aiohttp.ClientError, OSError)


def error_response(error: ApiError, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error.body(), error.status, headers={**error.headers(), **(headers or {})})


def validation_error_response(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 for the mounted routes (path, query, body), as every other 422: ``loc``,
    ``msg``, ``type``. FastAPI's own handler echoes each refused ``input``, and a NaN there made
    its answer unencodable: a 500."""
    assert isinstance(exc, RequestValidationError)
    items = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    return error_response(ApiError.invalid_items(items))


def api_error(exc: Exception, timeout_s: float) -> ApiError | None:
    """The ``ApiError`` an endpoint's failure answers; None for a bug (BentoML's 500)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ValidationError):
        items = [
            {"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_input=False, include_url=False)
        ]
        return ApiError.invalid_items(items)
    if isinstance(exc, TimeoutError):  # before BACKEND_ERRORS: TimeoutError is an OSError
        log.warning("request timed out after %s s", timeout_s)
        return ApiError.unavailable(f"request timed out after {timeout_s} s")
    if isinstance(exc, BACKEND_ERRORS):
        log.warning("inference backend failed: %s", type(exc).__name__)
        return ApiError.unavailable(f"inference backend unavailable ({type(exc).__name__})")
    return None
