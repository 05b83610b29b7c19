"""The runner's decode processes (face_api/pipeline/decoders.py): images are inspected and
decoded in worker processes; a worker still busy when its request's deadline passes is killed and
replaced, a worker that dies is replaced, and a request that is cancelled lets its worker finish
rather than kill it."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import threading

import cv2
import numpy as np
import pytest
from PIL import Image

from face_api.ops.context import RequestContext, serving
from face_api.ops.errors import ApiError
from face_api.pipeline.decoders import ImageDecoders, _Worker
from tests.paths import CROWD, IDENTITIES

PHOTO = IDENTITIES[0].read_bytes()
LIMIT = 40_000_000


def big_jpeg() -> bytes:
    """A 35 MP progressive photo: 0.5-0.8 s to decode here, where a 24 MP baseline one took
    0.2-0.4 s and on a faster machine beat a 0.2 s deadline."""
    image = Image.open(CROWD[0]).convert("RGB").resize((7000, 5000))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95, progressive=True)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def decoders():
    pool = ImageDecoders(1, LIMIT)
    yield pool
    pool.close()


def worker_pids(pool: ImageDecoders) -> list[int]:
    return [w.process.pid for w in pool._workers]


async def decode(pool: ImageDecoders, data: bytes, field: str = "image") -> np.ndarray:
    return await pool.decode(data, field, await pool.inspect(data, field))


def test_images_decode_in_another_process_to_what_opencv_gives(decoders):
    picture = asyncio.run(decode(decoders, PHOTO))
    expected = cv2.imdecode(np.frombuffer(PHOTO, np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(picture, expected)
    (pid,) = worker_pids(decoders)
    assert pid != os.getpid()
    picture[0, 0] = 7  # the runner's own array, writable


def test_a_bad_image_is_the_request_fields_422_and_keeps_the_worker(decoders):
    before = worker_pids(decoders)
    with pytest.raises(ApiError) as refused:
        asyncio.run(decode(decoders, b"#?RADIANCE\n", "image2"))
    assert refused.value.status == 422 and refused.value.field == "image2"
    assert worker_pids(decoders) == before
    assert asyncio.run(decode(decoders, PHOTO)).shape == (480, 640, 3)


def test_a_decode_past_the_deadline_is_503_and_its_worker_is_replaced(decoders):
    data = big_jpeg()
    before = worker_pids(decoders)

    async def late() -> None:
        header = await decoders.inspect(data, "image")  # no deadline: the decode is what is late
        with serving(RequestContext(deadline_s=0.05)):  # a tenth of the decode's time or less
            await decoders.decode(data, "image", header)

    with pytest.raises(ApiError) as late_error:
        asyncio.run(late())
    assert late_error.value.status == 503 and "deadline" in late_error.value.message

    async def next_request() -> np.ndarray:
        with serving(RequestContext(deadline_s=60)):
            return await decode(decoders, PHOTO)  # waits for the replacement

    assert asyncio.run(next_request()).shape == (480, 640, 3)
    assert worker_pids(decoders) != before
    with pytest.raises(ProcessLookupError):
        os.kill(before[0], 0)  # the late one was killed, not left decoding


def test_a_worker_that_died_idle_is_replaced_before_it_is_given_an_image(decoders):
    (pid,) = worker_pids(decoders)
    os.kill(pid, signal.SIGKILL)
    decoders._workers[0].process.wait()
    assert asyncio.run(decode(decoders, PHOTO)).shape == (480, 640, 3)
    assert worker_pids(decoders) != [pid]


def test_a_cancelled_request_lets_its_worker_finish_the_image(decoders, monkeypatch):
    data = big_jpeg()
    before = worker_pids(decoders)
    decoding = threading.Event()
    decode_in_worker = _Worker.decode

    def decode_and_tell(worker: _Worker, message, deadline):
        decoding.set()
        return decode_in_worker(worker, message, deadline)

    monkeypatch.setattr(_Worker, "decode", decode_and_tell)

    async def scenario() -> np.ndarray:
        task = asyncio.create_task(decode(decoders, data))
        await asyncio.get_running_loop().run_in_executor(None, decoding.wait)
        task.cancel()  # mid-decode, as when the client goes away
        with pytest.raises(asyncio.CancelledError):
            await task
        return await decode(decoders, PHOTO)  # served by the same worker, once it is done

    assert asyncio.run(scenario()).shape == (480, 640, 3)
    assert worker_pids(decoders) == before
