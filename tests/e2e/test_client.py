"""Every POST again through the real BentoML Python client."""

from __future__ import annotations

import base64
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.helpers import b64
from tests.paths import IDENTITIES

A, B = IDENTITIES[0], IDENTITIES[1]


@pytest.fixture(scope="module")
def crop_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An aligned 112x112 crop of A's face, as a PNG file."""
    from face_api.pipeline.faces import align_faces
    from tests.e2e.inprocess import detect_unrounded

    crop = align_faces(cv2.imread(str(A)), detect_unrounded(A)[np.newaxis], 112)[0]
    ok, data = cv2.imencode(".png", crop)
    assert ok
    path = tmp_path_factory.mktemp("crop") / "crop.png"
    path.write_bytes(data.tobytes())
    return path


def test_json_endpoints_through_the_client(bento_client, api, crop_png):
    c = bento_client
    detect = c.detect({"image": b64(A), "seq": 4, "maxResults": 1})
    assert (
        detect == api.post("/v1/detect", json={"image": b64(A), "seq": 4, "maxResults": 1}).json()
    )
    feature = c.feature({"image": b64(A)})
    assert feature == api.post("/v1/feature", json={"image": b64(A)}).json()
    assert c.embeddings({"image": b64(A)})["face_detect"] == feature["face_detect"]
    assert len(c.multi_feature({"image": b64(A), "maxResults": 2})["feature_info_list"]) == 1
    assert len(c.multi_embeddings({"image": b64(A)})["embeddings_info_list"]) == 1
    score = c.score({"image1": b64(A), "image2": b64(B)})
    assert score == api.post("/v1/score", json={"image1": b64(A), "image2": b64(B)}).json()
    other = c.feature({"image": b64(B)})
    fs = c.feature_score({"feature1": feature["feature"], "feature2": other["feature"]})
    assert fs["score"] == pytest.approx(score["score"], abs=1e-4)
    crop = base64.b64encode(crop_png.read_bytes()).decode()
    only = c.feature_only({"image": crop})
    assert only["face_detect"]["processed"] is False
    assert len(c.embeddings_only({"image": crop})["embeddings"]) == 512


def test_file_endpoints_through_the_client(bento_client, api, crop_png):
    c = bento_client
    detect = c.file_detect(image=A, seq=2, maxResults=3, detectSortType=1)
    assert (
        detect
        == api.post(
            "/v1/detect", json={"image": b64(A), "seq": 2, "maxResults": 3, "detectSortType": 1}
        ).json()
    )
    assert c.file_feature(image=A) == api.post("/v1/feature", json={"image": b64(A)}).json()
    assert (
        c.file_embeddings(image=A)["embeddings"]
        == api.post("/v1/embeddings", json={"image": b64(A)}).json()["embeddings"]
    )
    assert (
        c.file_score(image1=A, image2=B)["score"]
        == api.post("/v1/score", json={"image1": b64(A), "image2": b64(B)}).json()["score"]
    )
    assert len(c.file_feature_only(image=crop_png)["feature"]) == 2732
    assert len(c.file_embeddings_only(image=crop_png)["embeddings"]) == 512


def test_client_surfaces_contract_errors(bento_client):
    import bentoml

    with pytest.raises(bentoml.exceptions.BentoMLException) as err:
        bento_client.detect({"image": "@@@"})
    assert "image" in str(err.value)


def test_the_client_authenticates_with_its_own_token_argument(server):
    """`token=` sends `Authorization: Bearer KEY`: no header to set by hand."""
    import bentoml

    from tests.server import API_KEY

    with bentoml.SyncHTTPClient(server.url, token=API_KEY, server_ready_timeout=30) as client:
        assert len(client.detect({"image": b64(A)})["faces"]) == 1
    with (
        bentoml.SyncHTTPClient(server.url, token="wrong", server_ready_timeout=30) as client,
        pytest.raises(bentoml.exceptions.BentoMLException, match="401|invalid API key"),
    ):
        client.detect({"image": b64(A)})
