"""The one error type and the one envelope between the services (face_api/ops/errors.py)."""

from __future__ import annotations

import pytest

from face_api.ops.context import RequestContext
from face_api.ops.errors import SERVICE_STAGE, ApiError, Reply, replying


def test_an_api_error_raised_in_a_service_travels_in_its_reply_and_is_raised_again():
    with replying(RequestContext()) as reply:
        raise ApiError.invalid("image2", "not a decodable image", "value_error.image")
    assert reply.result is None and SERVICE_STAGE in reply.timings
    with pytest.raises(ApiError) as raised:
        Reply.model_validate(reply.model_dump()).unwrap()
    assert raised.value.status == 422 and raised.value.field == "image2"
    assert raised.value.body() == {
        "detail": [
            {"loc": ["body", "image2"], "msg": "not a decodable image", "type": "value_error.image"}
        ]
    }


def test_other_exceptions_are_not_swallowed_by_a_reply():
    with pytest.raises(ZeroDivisionError), replying():
        1 / 0  # noqa: B018


def test_each_status_has_its_shape_and_headers():
    assert ApiError.not_found("gone").body() == {"detail": "gone"}
    unavailable = ApiError.unavailable("the runner is down")
    assert unavailable.status == 503 and unavailable.headers() == {"retry-after": "1"}
    assert unavailable.body() == {"detail": "the runner is down; retry later"}
    assert ApiError(429, "too many").headers() == {"retry-after": "1"}
    assert ApiError(401, "invalid API key").headers() == {}
