"""Hostile and unusual images over JSON and multipart: each gets its answer per CONTRACT.md, and
the service stays healthy, with flat memory, after all of them.

Broken inputs are 4xx naming the field; unusual but valid images (16-bit, grayscale, RGBA, CMYK,
an animated GIF, 1x1) are decoded to 8-bit BGR and give the same face as the plain JPEG.
"""

from __future__ import annotations

import base64
import io
import struct
import zlib
from collections.abc import Callable

import cv2
import httpx
import numpy as np
import pytest
from PIL import Image

from tests.helpers import TRANSPORTS, assert_422, detect_file, detect_json
from tests.paths import IDENTITIES
from tests.server import peak_rss_bytes, reset_peak_rss

PHOTO = IDENTITIES[0]
JPEG = PHOTO.read_bytes()
BOX_TOLERANCE_PX = 6  # re-encoding and 8-bit conversions move the box by a few pixels


# -- how each case is made ---------------------------------------------------------------------
def _pil_bytes(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _photo() -> Image.Image:
    return Image.open(io.BytesIO(JPEG)).convert("RGB")


def _corrupt_huffman_table() -> bytes:
    data = bytearray(JPEG)
    dht = data.find(b"\xff\xc4")
    assert dht > 0
    data[dht + 5 : dht + 21] = b"\xff" * 16  # code counts that no Huffman tree can have
    return bytes(data)


def _png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A PNG whose header claims width x height 8-bit gray pixels, with a few bytes of data."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (width + 1) * 4)  # four rows; the rest is "missing"
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


def _radiance_hdr_bomb() -> bytes:
    """An 8192x5000 Radiance HDR (41 MP, 490 MB as float32): a format whose size Pillow cannot
    read, refused by its signature."""
    ok, data = cv2.imencode(".hdr", np.zeros((5000, 8192, 3), np.float32))
    assert ok
    return data.tobytes()


def _png_16_bit() -> bytes:
    deep = cv2.imdecode(np.frombuffer(JPEG, np.uint8), cv2.IMREAD_COLOR).astype(np.uint16) * 257
    ok, data = cv2.imencode(".png", deep)
    assert ok
    return data.tobytes()


def _animated_gif() -> bytes:
    first = _photo()
    frames = [first.convert("P"), first.rotate(180).convert("P")]
    return _pil_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)


BROKEN: dict[str, Callable[[], bytes]] = {
    "zero bytes": lambda: b"",
    "random bytes": lambda: np.random.default_rng(7).bytes(20_000),
    "truncated JPEG": lambda: JPEG[: len(JPEG) * 2 // 3],
    "JPEG with a corrupt Huffman table": _corrupt_huffman_table,
    "PNG bomb, 100000x100000 in its header": _png_bomb,
    "Radiance HDR, 8192x5000 (a format not taken)": _radiance_hdr_bomb,
}
SAME_FACE: dict[str, Callable[[], bytes]] = {
    "16-bit PNG": _png_16_bit,
    "grayscale JPEG": lambda: _pil_bytes(_photo().convert("L"), "JPEG", quality=95),
    "RGBA PNG": lambda: _pil_bytes(_photo().convert("RGBA"), "PNG"),
    "CMYK JPEG": lambda: _pil_bytes(_photo().convert("CMYK"), "JPEG", quality=95),
    "animated GIF (first frame)": _animated_gif,
}


# -- helpers -----------------------------------------------------------------------------------


def only_box(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    faces = response.json()["faces"]
    assert len(faces) == 1, faces
    box = faces[0]["boundingBox"]
    return np.array([box["left"], box["top"], box["right"], box["bottom"]])


@pytest.fixture(scope="module")
def reference_box(api) -> np.ndarray:
    return only_box(detect_json(api, JPEG))


# -- the cases ---------------------------------------------------------------------------------
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("case", BROKEN)
def test_broken_images_are_422_naming_the_field(api, case, transport):
    response = TRANSPORTS[transport](api, BROKEN[case]())
    detail = assert_422(response, "image")
    if "bomb" in case:
        assert "over the limit of 40000000 pixels" in detail[0]["msg"]
        assert detail[0]["type"] == "value_error.image_too_large"
    if "PNG bomb" in case:
        assert "100000x100000" in detail[0]["msg"]
    if "not taken" in case:
        assert detail[0]["msg"].startswith("Radiance HDR images are not accepted: send JPEG")
        assert detail[0]["type"] == "value_error.image_format"


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("case", SAME_FACE)
def test_unusual_formats_give_the_same_face(api, reference_box, case, transport):
    box = only_box(TRANSPORTS[transport](api, SAME_FACE[case]()))
    assert np.abs(box - reference_box).max() <= BOX_TOLERANCE_PX, (box, reference_box)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_1x1_image_is_served_with_no_faces(api, transport):
    response = TRANSPORTS[transport](api, _pil_bytes(Image.new("RGB", (1, 1)), "PNG"))
    assert response.status_code == 200 and response.json()["faces"] == []


def test_tolerated_base64_variants_give_the_same_face(api, reference_box):
    text = base64.b64encode(JPEG).decode()
    with_line_breaks = "\r\n".join(text[i : i + 76] for i in range(0, len(text), 76))
    for variant in (with_line_breaks, f"data:image/jpeg;base64,{text}", f"  {text}\n"):
        box = only_box(api.post("/v1/detect", json={"image": variant}))
        assert np.abs(box - reference_box).max() <= 1


@pytest.mark.parametrize(
    "variant",
    [
        base64.urlsafe_b64encode(JPEG).decode(),
        base64.b64encode(JPEG[:-1]).decode().rstrip("="),
    ],
    ids=["URL-safe alphabet", "missing padding"],
)
def test_non_standard_base64_is_422(api, variant):
    assert "-" in variant or "_" in variant or len(variant) % 4
    detail = assert_422(api.post("/v1/detect", json={"image": variant}), "image")
    assert "base64" in detail[0]["msg"]


def test_text_in_a_file_field_is_422_and_never_fetched(api):
    response = api.post("/v1/file/detect", files={"image": (None, "http://127.0.0.1:9/a.jpg")})
    assert "never fetched" in assert_422(response, "image")[0]["msg"]


def test_body_over_the_limit_is_413_with_and_without_content_length(api):
    over = 21 * 1024 * 1024
    declared = api.post(
        "/v1/detect", content=b"0" * over, headers={"content-type": "application/json"}
    )
    assert declared.status_code == 413

    def chunks():  # no Content-Length: chunked transfer encoding
        for _ in range(over // (1024 * 1024)):
            yield b"0" * (1024 * 1024)

    chunked = api.post("/v1/file/detect", content=chunks(), headers={"content-type": "image/jpeg"})
    assert chunked.status_code == 413
    assert "over the limit" in chunked.json()["detail"]


def test_bombs_leave_memory_flat_and_the_service_healthy(api, server, reference_box):
    bombs = [_png_bomb(), _radiance_hdr_bomb()]
    for bomb in bombs:  # warm-up: first requests allocate pools and caches
        detect_json(api, bomb)
    reset_peak_rss(server)
    before = peak_rss_bytes(server)  # each role as it is now, its decode processes included
    for _ in range(10):
        for bomb in bombs:
            assert detect_json(api, bomb).status_code == 422
            assert detect_file(api, bomb).status_code == 422
    peaks = peak_rss_bytes(server)
    for role, rss in before.items():
        # 100000x100000 gray would be 10 GB, the HDR 490 MB as floats: a decode of either would
        # show as hundreds of megabytes at the peak.
        assert peaks[role] - rss < 50 * 1024 * 1024, (role, rss, peaks[role])
    assert api.get("/v1/health").json() == {"status": "ok"}
    assert np.array_equal(only_box(detect_json(api, JPEG)), reference_box)
