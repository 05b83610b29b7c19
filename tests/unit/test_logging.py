"""BentoML's error line for an invalid request keeps the request's data out of the log."""

from __future__ import annotations

import io
import logging

import pytest
from pydantic import BaseModel, ValidationError

from face_api.ops.bentoml_private import REQUEST_ERROR_LOGGERS
from face_api.ops.logs import enable_service_logging

SECRET_IMAGE = "aGVsbG8gc2VjcmV0IGltYWdlIGJ5dGVz" * 4


class Body(BaseModel):
    image: str
    seq: int


@pytest.mark.parametrize("logger_name", REQUEST_ERROR_LOGGERS)
def test_validation_failures_are_logged_without_their_input(logger_name):
    enable_service_logging()
    logger = logging.getLogger(logger_name)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    try:
        try:
            Body.model_validate({"image": 5, "seq": SECRET_IMAGE})
        except ValidationError:
            logger.error("Exception on %s [%s]", "/v1/detect", "POST", exc_info=True)
        try:
            raise RuntimeError("a real server fault")
        except RuntimeError:
            logger.error("Exception on %s [%s]", "/v1/detect", "POST", exc_info=True)
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert SECRET_IMAGE[:16] not in text
    assert "INFO Exception on /v1/detect [POST]: invalid request: image (string_type), seq" in text
    # A real fault keeps its level and traceback.
    assert "ERROR Exception on /v1/detect [POST]" in text and "RuntimeError" in text
