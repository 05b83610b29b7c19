"""The feature codec and the similarity score."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from face_api.inference.vectors import normalize
from face_api.ops.errors import ApiError
from face_api.pipeline.features import cosine, decode_feature, encode_feature, feature_score


def unit(seed: int, size: int = 512) -> np.ndarray:
    return normalize(np.random.default_rng(seed).normal(size=size))


def test_feature_is_base64_of_little_endian_float32():
    vector = unit(1)
    text = encode_feature(vector)
    assert len(text) == 2732
    raw = base64.b64decode(text)
    assert len(raw) == 2048
    np.testing.assert_array_equal(np.frombuffer(raw, "<f4"), vector)
    np.testing.assert_array_equal(decode_feature(text, "feature1"), vector)


def test_score_is_the_plain_cosine():
    a, b = unit(1), unit(2)
    assert feature_score(encode_feature(a), encode_feature(b)) == pytest.approx(
        float(a @ b), abs=1e-6
    )
    assert feature_score(encode_feature(a), encode_feature(-a)) == pytest.approx(-1.0, abs=1e-6)
    assert cosine(a * 3, a) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize(
    ("feature1", "feature2", "field", "message"),
    [
        ("AAAA", encode_feature(unit(1)), "feature1", "whole number of float32"),
        (encode_feature(unit(1)), encode_feature(unit(1, 128)), "feature2", "has 128 values"),
        (encode_feature(np.array([np.nan, 1], "<f4")), "AACAPwAAgD8=", "feature1", "non-finite"),
        ("!!!", "AACAPw==", "feature1", "not valid base64"),
        ("AACAPw==", "", "feature2", "empty"),
        ("AAAAAAAAAAA=", "AACAPwAAgD8=", "feature1", "all zeros"),
    ],
)
def test_bad_features_are_422_naming_the_field(feature1, feature2, field, message):
    with pytest.raises(ApiError, match=message) as err:
        feature_score(feature1, feature2)
    assert err.value.field == field and err.value.status == 422
