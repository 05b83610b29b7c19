"""Every gallery operation through the package's typed client, against a real server."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from face_api.galleries.client import FaceApiError, GalleryClient
from face_api.galleries.schemas import EnrollResponse, SearchResponse, VerifyResponse
from face_api.pipeline.features import encode_feature
from tests.paths import IDENTITIES
from tests.server import API_KEY

YUKE = [p for p in IDENTITIES if p.stem.startswith("yuke")]
FENGPIN = [p for p in IDENTITIES if p.stem.startswith("fengpin")]


@pytest.fixture
def galleries(server):
    with GalleryClient(server.url, api_key=API_KEY) as client:
        yield client


def test_every_gallery_operation(galleries, api):
    name = "client-test"
    yuke = galleries.enroll(name, "yuke", image=YUKE[0], metadata={"desk": 7})
    assert isinstance(yuke, EnrollResponse) and yuke.faces[0].face_detect.processed
    feng = galleries.enroll(name, "fengpin", image=FENGPIN[0].read_bytes())
    feature = api.post("/v1/file/feature", files={"image": YUKE[1].read_bytes()}).json()["feature"]
    by_feature = galleries.enroll(name, "yuke", feature=feature)
    assert by_feature.faces[0].face_detect is None

    found = galleries.search(name, image=YUKE[2], max_results=3)
    assert isinstance(found, SearchResponse)
    best = found.results[0].matches[0]
    assert best.subject == "yuke"
    assert best.face_id in {yuke.faces[0].face_id, by_feature.faces[0].face_id}
    assert found.results[0].match is True and found.results[0].face_detect.quality is None
    judged = galleries.search(name, image=YUKE[2], return_quality=True).results[0].face_detect
    # the probe face's quality, as /v1/detect grades the same face
    detected = api.post(
        "/v1/file/detect",
        files={"image": YUKE[2].read_bytes()},
        data={"maxResults": "1", "returnQuality": "true"},
    ).json()["faces"][0]["quality"]
    quality = judged.quality
    assert (quality.grade, quality.reasons) == (detected["grade"], detected["reasons"])
    assert quality.recognizability == detected["recognizability"]
    with pytest.raises(FaceApiError) as blurry:  # a face too blurred for the default bar
        blurred = cv2.imencode(".png", cv2.GaussianBlur(cv2.imread(str(YUKE[0])), (0, 0), 5))[1]
        galleries.enroll(name, "yuke", image=blurred.tobytes())
    assert blurry.value.status == 422
    assert "below the AUTO quality bar: LOW_RECOGNIZABILITY" in str(blurry.value.detail)
    galleries.enroll(name, "blurred", image=blurred.tobytes(), quality_filter="NONE")
    strict = galleries.search(name, feature=feature, threshold=0.99)
    assert [m.face_id for m in strict.results[0].matches] == [by_feature.faces[0].face_id]

    verdict = galleries.verify(name, "fengpin", image=YUKE[2])
    assert isinstance(verdict, VerifyResponse) and verdict.match is False
    assert galleries.verify(name, "yuke", image=YUKE[3]).match is True

    assert galleries.delete_subject(name, "blurred") == 1
    listed = {g.name: g.faces for g in galleries.galleries().galleries}
    assert listed[name] == 3
    subjects = galleries.subjects(name)
    assert [(s.subject, s.faces) for s in subjects.subjects] == [("fengpin", 1), ("yuke", 2)]
    page = galleries.faces(name, subject="yuke", limit=1)
    assert page.total == 2 and len(page.faces) == 1
    assert [f.metadata for f in galleries.faces(name, subject="yuke").faces].count({"desk": 7}) == 1

    assert galleries.delete_face(name, feng.faces[0].face_id) == 1
    assert galleries.delete_subject(name, "yuke") == 2
    galleries.enroll(name, "again", feature=feature)
    assert galleries.delete_gallery(name) == 1
    assert name not in {g.name for g in galleries.galleries().galleries}


def test_errors_carry_the_status_and_the_detail(galleries, server):
    with pytest.raises(FaceApiError) as missing:
        galleries.search("never-made", feature=encode_feature(np.ones(512)))
    assert missing.value.status == 404
    assert missing.value.detail == "gallery 'never-made' does not exist"
    with pytest.raises(FaceApiError) as bad:
        galleries.enroll(".hidden", "x", feature=encode_feature(np.ones(512)))
    assert bad.value.status == 422 and "letter or a digit" in str(bad.value.detail)
    with pytest.raises(ValueError, match="exactly one"):
        galleries.search("g")
    wrong = GalleryClient(server.url, api_key="wrong")
    with wrong, pytest.raises(FaceApiError) as refused:
        wrong.galleries()
    assert refused.value.status == 401
