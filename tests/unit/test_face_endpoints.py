"""The face endpoints' work in process, against a fake runner: what each endpoint asks the runner
for, and the contract's answer it makes of the runner's faces and embeddings. (The real runner
and server: tests/e2e.)"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest

from face_api.http.errors import error_response
from face_api.http.face_endpoints import FaceEndpoints
from face_api.http.handling import handled
from face_api.http.info import ServedModel
from face_api.http.results import quality_bars
from face_api.http.runner_client import RunnerClient
from face_api.inference.detector import DETECTION_WIDTH
from face_api.ops import timing
from face_api.ops.errors import SERVICE_STAGE, ApiError, Reply, replying
from face_api.ops.settings import Settings
from face_api.ops.timing import Timings
from face_api.pipeline.analysis import Analysis
from face_api.pipeline.faces import DetectSortType
from face_api.pipeline.features import decode_feature

INFO = {
    "pack": {"name": "pack_a", "tag": "pack_a:1", "files": {}, "match_threshold": 0.3},
    "recognizer": {"input_size": [112, 112], "embedding_size": 4},
    "detector": {},
    "providers": ["CPUExecutionProvider"],
    "device": "cpu",
    "onnxruntime": "1",
    "package_conflicts": [],
    "repair_command": None,
}


def face(x1: float, y1: float, x2: float, y2: float, score: float = 0.9) -> np.ndarray:
    row = np.zeros(DETECTION_WIDTH, np.float32)
    row[:5] = x1, y1, x2, y2, score
    row[5:] = np.tile([(x1 + x2) / 2, (y1 + y2) / 2], 5)
    return row


class FakeRunner:
    """``RunnerClient``'s calls, answering canned analyses and recording what was asked."""

    def __init__(self, analyses: list[Analysis]) -> None:
        self.analyses = analyses
        self.calls: list[dict[str, Any]] = []
        self.info_calls = 0

    async def analyze(self, images, max_faces, sort_type, embed, quality=False) -> list[Analysis]:
        self.calls.append(
            {"images": list(images), "max_faces": max_faces, "sort_type": sort_type,
             "embed": embed, "quality": quality}
        )  # fmt: skip
        return self.analyses[: len(images)]

    async def embed_crops(self, crops) -> np.ndarray:
        self.calls.append({"crops": list(crops)})
        return np.array([[1.0, 0.0, 0.0, 0.0]], np.float32)

    async def info(self) -> dict[str, Any]:
        self.info_calls += 1
        return INFO


def endpoints(analyses: list[Analysis], cap: int = 1000) -> tuple[FaceEndpoints, FakeRunner]:
    runner = FakeRunner(analyses)
    served = ServedModel(runner, "face-api")  # type: ignore[arg-type]
    return FaceEndpoints(runner, served, quality_bars(Settings()), cap), runner  # type: ignore[arg-type]


def two_faces(quality: bool = False) -> Analysis:
    faces = np.stack([face(10.4, 20.6, 60.2, 90.0), face(-5.0, 0.0, 30.0, 35.0, 0.7)])
    embeddings = np.array([[0.0, 1.0, 0.0, 0.0], [0.6, 0.8, 0.0, 0.0]], np.float32)
    # sharpness, brightness, yaw, pitch, roll, norm, motion blur, recognizability
    row = [0.5, 0.5, 0.0, 0.0, 0.0, 20.0, 0.2, 0.9]
    measures = np.tile(row, (2, 1)) if quality else None
    return Analysis(faces, embeddings, height=100, width=50, quality=measures)


def no_faces() -> Analysis:
    return Analysis(np.zeros((0, DETECTION_WIDTH), np.float32), None, height=10, width=10)


IMAGE = ("image", b"encoded")


def test_detect_asks_once_within_the_cap_and_answers_pixels_clipped_to_the_image():
    faces, runner = endpoints([two_faces()], cap=1)
    answer = asyncio.run(faces.detect(IMAGE, seq=7, sort_type=1, max_results=5, quality=False))
    assert runner.calls == [
        {"images": [IMAGE], "max_faces": 1, "sort_type": DetectSortType.CONFIDENCE, "embed": False,
         "quality": False}
    ]  # fmt: skip
    assert answer.seq == 7 and len(answer.faces) == 2
    first, second = answer.faces
    box = first.bounding_box
    assert (box.left, box.top, box.right, box.bottom) == (10, 21, 50, 90)  # right clipped to 50
    assert second.bounding_box.left == 0 and first.quality is None


def test_feature_is_the_largest_faces_embedding_as_base64_float32():
    faces, runner = endpoints([two_faces()])
    answer = asyncio.run(faces.feature(IMAGE, quality=False))
    assert runner.calls[0]["max_faces"] == 1 and runner.calls[0]["embed"] is True
    assert decode_feature(answer.feature, "feature").tolist() == [0.0, 1.0, 0.0, 0.0]
    assert answer.face_detect.processed and answer.face_detect.confidence == pytest.approx(0.9)


def test_feature_with_quality_grades_the_face():
    faces, runner = endpoints([two_faces(quality=True)])
    answer = asyncio.run(faces.embeddings(IMAGE, quality=True))
    assert runner.calls[0]["quality"] is True
    quality = answer.face_detect.quality
    assert quality is not None and quality.recognizability == pytest.approx(0.9)
    # a 49.8 px box (the high bar: 32), recognizability 0.9 (the high bar: 0.84)
    assert quality.grade == "high" and quality.reasons == []
    assert answer.embeddings == [0.0, 1.0, 0.0, 0.0]


def test_no_face_answers_the_contracts_empty_entry():
    faces, _ = endpoints([no_faces()])
    feature = asyncio.run(faces.feature(IMAGE, quality=False))
    assert feature.feature == "" and not feature.face_detect.processed
    assert asyncio.run(faces.multi_embeddings(IMAGE, 5)).embeddings_info_list == []


def test_multi_feature_keeps_every_face_in_order():
    faces, runner = endpoints([two_faces()])
    answer = asyncio.run(faces.multi_feature(IMAGE, 128))
    assert runner.calls[0]["max_faces"] == 128
    features = [decode_feature(f.feature, "feature").tolist() for f in answer.feature_info_list]
    assert features == [[0.0, 1.0, 0.0, 0.0], pytest.approx([0.6, 0.8, 0.0, 0.0])]


def test_a_crop_is_embedded_without_detection_and_its_box_is_the_whole_crop():
    faces, runner = endpoints([])
    answer = asyncio.run(faces.feature_only(("image", b"crop")))
    assert runner.calls == [{"crops": [("image", b"crop")]}]
    box = answer.face_detect.bounding_box
    assert (box.right, box.bottom) == (112, 112) and not answer.face_detect.processed


def test_score_sends_both_images_in_one_call():
    faces, runner = endpoints([two_faces(), two_faces()])
    answer = asyncio.run(faces.score(("image1", b"a"), ("image2", b"b")))
    assert len(runner.calls) == 1 and [i[0] for i in runner.calls[0]["images"]] == [
        "image1",
        "image2",
    ]
    assert answer.score == pytest.approx(1.0) and len(answer.face_detects) == 2


def test_score_without_a_face_in_one_image_is_zero():
    faces, _ = endpoints([two_faces(), no_faces()])
    answer = asyncio.run(faces.score(("image1", b"a"), ("image2", b"b")))
    assert answer.score == 0.0 and not answer.face_detects[1].processed


def test_the_runners_info_is_asked_once_but_health_asks_every_time():
    faces, runner = endpoints([])
    served = faces.served
    asyncio.run(served.model_names())
    asyncio.run(served.server_info())
    assert runner.info_calls == 1
    assert asyncio.run(served.health()).status_code == 200
    assert asyncio.run(served.health()).status_code == 200
    assert runner.info_calls == 3


def test_an_unknown_model_is_404_naming_the_loaded_one():
    faces, _ = endpoints([])
    answer = asyncio.run(faces.served.model_detail("other"))
    assert answer.status_code == 404
    assert json.loads(answer.body) == {"detail": "model 'other' is not loaded; loaded: ['pack_a']"}


def test_a_runner_that_fails_makes_health_503_with_retry_after():
    class Down(FakeRunner):
        async def info(self) -> dict[str, Any]:
            raise ConnectionError

    served = ServedModel(Down([]), "face-api")  # type: ignore[arg-type]
    answer = asyncio.run(served.health())
    assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
    assert json.loads(answer.body) == {"status": "unavailable", "detail": "ConnectionError"}


# -- the one error type and the one envelope ------------------------------------------------------
def test_an_api_error_raised_in_a_service_travels_in_its_reply_and_is_raised_again():
    timings = Timings()
    with replying(timings) as reply:
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
    unavailable = error_response(ApiError.unavailable("the runner is down"))
    assert unavailable.status_code == 503 and unavailable.headers["retry-after"] == "1"
    assert json.loads(unavailable.body) == {"detail": "the runner is down; retry later"}
    assert "retry-after" not in error_response(ApiError(401, "invalid API key")).headers


def test_the_runner_client_unwraps_the_reply_and_counts_the_hop():
    class Handle:
        class to_async:  # noqa: N801 - BentoML's name
            @staticmethod
            async def analyze(**arguments: Any) -> Reply:
                with replying(Timings()) as reply:
                    reply.result = [
                        {"faces": np.zeros((0, 15)), "embeddings": None, "height": 4, "width": 3}
                    ]
                reply.timings["decode"] = 2.0
                return reply

    request = Timings()
    token = timing.current.set(request)
    try:
        (found,) = asyncio.run(
            RunnerClient(Handle()).analyze([IMAGE], 1, DetectSortType.AREA, False)
        )
    finally:
        timing.current.reset(token)
    assert (found.height, found.width) == (4, 3)
    assert set(request.ms) == {"hop", "decode"}  # the service's own stage is not reported


def test_handled_answers_an_endpoints_api_error_in_the_contracts_shape():
    @handled
    async def endpoint() -> None:
        raise ApiError.invalid("image", "image is empty", "value_error.empty")

    answer = asyncio.run(endpoint())
    assert answer.status_code == 422
    assert json.loads(answer.body)["detail"][0]["loc"] == ["body", "image"]
