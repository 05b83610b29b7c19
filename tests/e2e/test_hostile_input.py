"""What a small hostile request can cost the service, through a real server: each case is one
class of attack, refused before the work it would have cost, and the service goes on serving
everyone else (docs/operations.md, "Limits and security")."""

from __future__ import annotations

import base64
import concurrent.futures
import io
import re
import struct
import threading
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from face_api.pipeline.images import JPEG_MAX_SCANS
from tests.helpers import assert_422
from tests.paths import IDENTITIES
from tests.server import (
    API_KEY,
    api_client,
    cpu_seconds,
    peak_rss_bytes,
    reset_peak_rss,
    rss_bytes,
)

PHOTO = IDENTITIES[0].read_bytes()
RUNNER = "InsightFaceRunner"
API = "FaceAPI"


def jpeg_segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of each segment up to the end of image, scans with their data."""
    next_marker = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
    segments, pos = [], 2
    while data[pos + 1] != 0xD9:
        marker = data[pos + 1]
        (length,) = struct.unpack_from(">H", data, pos + 2)
        end = pos + 2 + length
        if marker == 0xDA:
            end = next_marker.search(data, end).start()
        segments.append((marker, pos, end))
        pos = end
    return segments


def scan_bomb(size: int = 6000, total_bytes: int = 1_040_000) -> bytes:
    """The attack as it was sent: a progressive JPEG whose header says ``size`` x ``size`` (36 MP,
    under the pixel limit), then near-empty AC scans up to ``total_bytes``: every scan walks the
    whole image's coefficients again (41 s of a core, measured, at 1 MB)."""
    small = io.BytesIO()
    Image.new("RGB", (16, 16), (128, 100, 90)).save(small, "JPEG", progressive=True)
    data = bytearray(small.getvalue())
    sof = data.find(b"\xff\xc2")
    struct.pack_into(">HH", data, sof + 5, size, size)
    _, start, end = [s for s in jpeg_segments(bytes(data)) if s[0] == 0xDA][-1]
    scan = bytes(data[start:end])
    return bytes(data[:end]) + scan * (total_bytes // len(scan)) + b"\xff\xd9"


def upload(client: httpx.Client, route: str, **files: bytes) -> httpx.Response:
    return client.post(route, files={name: ("upload", data) for name, data in files.items()})


def test_a_jpeg_of_thousands_of_scans_is_refused_at_the_cost_of_a_read(api, server):
    bomb = scan_bomb()
    assert len(bomb) > 1_000_000
    before = cpu_seconds(server, RUNNER)
    started = time.monotonic()
    response = upload(api, "/v1/file/detect", image=bomb)
    elapsed = time.monotonic() - started
    detail = assert_422(response, "image")
    assert f"more than {JPEG_MAX_SCANS} scans" in detail[0]["msg"]
    spent = cpu_seconds(server, RUNNER) - before
    # Reading 1 MB of markers: milliseconds. Decoding it had cost 41 s of a core.
    assert spent < 1.0 and elapsed < 10, (spent, elapsed)


def tiny(kind: str) -> bytes:
    """815-byte-class images of formats whose size Pillow cannot read (they had reserved the
    whole pixel budget each), and an AVIF whose major brand is not avif (decoded on faith, on
    the runner's event loop)."""
    if kind == "HDR":
        return b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 64 +X 64\n" + b"\x80" * 700
    if kind == "PAM":
        return b"P7\nWIDTH 64\nHEIGHT 64\nDEPTH 3\nMAXVAL 255\nTUPLTYPE RGB\nENDHDR\n" + b"\0" * 700
    if kind == "PFM":
        return b"PF\n16 16\n-1.0\n" + b"\0" * 700
    ftyp = b"ftypisom\x00\x00\x00\x00avifmif1miaf"
    return struct.pack(">I", len(ftyp) + 4) + ftyp + b"\x00" * 1000


@pytest.mark.parametrize("kind", ["HDR", "PAM", "PFM", "AVIF"])
def test_formats_of_unknown_size_are_refused_by_name(api, kind):
    response = upload(api, "/v1/file/score", image1=PHOTO, image2=tiny(kind))
    detail = assert_422(response, "image2")
    assert detail[0]["type"] == "value_error.image_format"
    assert "not accepted" in detail[0]["msg"] and "send JPEG" in detail[0]["msg"]


def test_tiny_images_of_unknown_size_from_three_clients_starve_no_one(server, api):
    """Each had held the whole 40 MP pixel budget for its analysis: 92% of other clients'
    detects were 429. Now they hold nothing, and cost nothing, while health stays fast."""
    stop = time.monotonic() + 8
    hostile = [tiny("HDR"), tiny("PAM"), tiny("PFM"), tiny("AVIF")]

    def attacker(n: int) -> list[int]:
        statuses = []
        with api_client(server.url) as client:
            while time.monotonic() < stop:
                response = upload(client, "/v1/file/score", image1=PHOTO, image2=hostile[n % 4])
                statuses.append(response.status_code)
                n += 1
        return statuses

    def honest() -> list[int]:
        statuses = []
        with api_client(server.url) as client:
            while time.monotonic() < stop:
                statuses.append(upload(client, "/v1/file/detect", image=PHOTO).status_code)
        return statuses

    def probes() -> list[int]:
        statuses = []
        while time.monotonic() < stop:
            statuses.append(httpx.get(f"{server.url}/v1/health", timeout=5).status_code)
        return statuses

    before = rss_bytes(server)[RUNNER]
    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        attacks = [pool.submit(attacker, n) for n in range(3)]
        honest_statuses = pool.submit(honest)
        health = pool.submit(probes)
        for attack in attacks:
            assert set(attack.result()) == {422}
        assert set(honest_statuses.result()) == {200}
        assert set(health.result()) == {200}
    assert rss_bytes(server)[RUNNER] - before < 100 * 1024 * 1024


def test_a_file_name_over_the_limit_is_422_not_a_500(api):
    name = "x" * 246 + ".jpg"
    response = api.post("/v1/file/detect", files={"image": (name, PHOTO)})
    detail = assert_422(response, "image")
    assert detail[0]["type"] == "value_error.filename"
    short = api.post("/v1/file/detect", files={"image": ("x" * 196 + ".jpg", PHOTO)})
    assert short.status_code == 200


def test_no_answer_carries_an_internal_header(server, api):
    url = server.url
    answers = {
        "401": httpx.post(f"{url}/v1/detect", json={}),
        "404 at the edge": api.delete("/v1/galleries/g/"),
        "413": api.post("/v1/detect", content=b"0" * (21 * 1024 * 1024)),
        "422 at the edge": api.post("/v1/detect", content=b"\xff\xfe"),
        "422 of an endpoint": api.post("/v1/detect", json={"image": "@@"}),
        "404 of a route": api.get("/v1/galleries/none/faces"),
        "200": api.post("/v1/detect", json={"image": base64.b64encode(PHOTO).decode()}),
    }
    for case, response in answers.items():
        assert not any(k.lower().startswith("x-face-api") for k in response.headers), case
        assert "x-request-id" in response.headers, case


def json_body(size: int) -> bytes:
    """A JSON body of about ``size`` bytes: an image field of base64 (no image in it)."""
    payload = base64.b64encode(np.random.default_rng(1).bytes(size * 3 // 4)).decode()
    return b'{"image": "' + payload.encode() + b'"}'


def test_concurrent_large_bodies_are_bounded_by_bytes_in_flight(server):
    """16 bodies of 18 MiB at once had taken an API worker from 209 MB to 1,994 MB. Past four
    bodies at the limit in flight (FACE_MAX_BODY_BYTES_IN_FLIGHT) they are 429, before they are
    read; the worker's peak stays within the replica's stated memory (docs/operations.md: 4 x 20
    MiB, about 6 x its size each at its peak, under 600 MB over the worker's resting size)."""
    body = json_body(18 * 1024 * 1024)
    headers = {"x-api-key": API_KEY, "content-type": "application/json"}
    with api_client(server.url) as client:  # warm-up: the worker's pools and caches
        client.post("/v1/detect", content=body, headers=headers)
    reset_peak_rss(server)
    resting = rss_bytes(server)[API]

    together = threading.Barrier(16)

    def send(_: int) -> int:
        with httpx.Client(timeout=120) as client:
            together.wait()  # all 16 at once, as the attack sent them
            return client.post(f"{server.url}/v1/detect", content=body, headers=headers).status_code

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(send, range(16)))
    assert set(statuses) <= {422, 429} and statuses.count(429) >= 1, statuses
    grown = peak_rss_bytes(server)[API] - resting
    assert grown < 600 * 1024 * 1024, grown / 2**20
