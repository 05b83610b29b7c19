"""Request and response bodies: wire names, defaults, bounds."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from face_api.http.schemas import (
    DetectReqBody,
    EmbeddingsResponse,
    FeatureResponse,
    MultiEmbeddingsReqBody,
    MultiFeatureResponse,
    ScoreResponse,
)


def test_detect_request_defaults_and_camel_case():
    body = DetectReqBody.model_validate({"image": "x"})
    assert (body.seq, body.max_results, body.detect_sort_type) == (0, 750, 0)
    body = DetectReqBody.model_validate(
        {"image": "x", "seq": 9, "maxResults": 3, "detectSortType": 2}
    )
    assert (body.seq, body.max_results, body.detect_sort_type) == (9, 3, 2)
    assert MultiEmbeddingsReqBody.model_validate({"image": "x"}).max_results == 128


@pytest.mark.parametrize(
    "payload",
    [
        {"image": "x", "maxResults": 0},
        {"image": "x", "maxResults": 1001},
        {"image": "x", "detectSortType": 3},
        {"image": 5},
        {},
    ],
)
def test_detect_request_bounds(payload):
    with pytest.raises(ValidationError):
        DetectReqBody.model_validate(payload)


def test_response_keys_are_the_references():
    assert list(FeatureResponse(version="1").model_dump()) == ["version", "feature", "face_detect"]
    assert list(EmbeddingsResponse(version="1").model_dump()) == [
        "version",
        "embeddings",
        "face_detect",
    ]
    assert list(MultiFeatureResponse(version="1").model_dump()) == ["version", "feature_info_list"]
    assert list(ScoreResponse().model_dump()) == ["score", "face_detects"]
    detect = FeatureResponse(version="1").model_dump()["face_detect"]
    assert list(detect) == ["processed", "confidence", "boundingBox", "landmarks"]


@pytest.mark.parametrize("value", [True, 2.5, "10", None])
def test_integers_are_json_integers_never_coerced(value):
    with pytest.raises(ValidationError):
        DetectReqBody.model_validate({"image": "x", "maxResults": value})
    with pytest.raises(ValidationError):
        DetectReqBody.model_validate({"image": "x", "detectSortType": value})


def test_a_number_with_no_fraction_is_an_integer_as_json_schema_says():
    body = DetectReqBody.model_validate({"image": "x", "maxResults": 10.0, "detectSortType": 2.0})
    assert (body.max_results, body.detect_sort_type) == (10, 2)
    assert type(body.max_results) is int
