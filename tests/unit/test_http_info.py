"""What the info endpoints answer (face_api/http/info.py), against a fake runner."""

from __future__ import annotations

import asyncio
import json

from face_api.http.info import ServedModel
from face_api.ops.runner_hop import RunnerInfo
from tests.fakes import FakeRunner, fake_endpoints


def test_the_runners_info_is_asked_once_but_health_asks_every_time():
    faces, runner = fake_endpoints([])
    served = faces.served
    asyncio.run(served.model_names())
    asyncio.run(served.server_info())
    assert runner.info_calls == 1
    assert asyncio.run(served.health()).status_code == 200
    assert asyncio.run(served.health()).status_code == 200
    assert runner.info_calls == 3


def test_an_unknown_model_is_404_naming_the_loaded_one():
    faces, _ = fake_endpoints([])
    answer = asyncio.run(faces.served.model_detail("other"))
    assert answer.status_code == 404
    assert json.loads(answer.body) == {"detail": "model 'other' is not loaded; loaded: ['pack_a']"}


def test_a_runner_that_fails_makes_health_503_with_retry_after():
    class Down(FakeRunner):
        async def info(self) -> RunnerInfo:
            raise ConnectionError

    served = ServedModel(Down([]), "face-api")  # type: ignore[arg-type]
    answer = asyncio.run(served.health())
    assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
    assert json.loads(answer.body) == {"status": "unavailable", "detail": "ConnectionError"}
