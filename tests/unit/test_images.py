"""Image decoding: base64 tolerance, formats, conversions, limits."""

from __future__ import annotations

import base64
import io
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from face_api.ops.errors import ApiError
from face_api.pipeline.images import decode_base64, decode_image
from tests.helpers import PEAK_KB_SOURCE
from tests.paths import IDENTITIES, ROOT

PHOTO = IDENTITIES[0].read_bytes()
LIMIT = 40_000_000


def encode(array: np.ndarray, ext: str) -> bytes:
    ok, data = cv2.imencode(ext, array)
    assert ok
    return data.tobytes()


def test_base64_tolerates_whitespace_line_breaks_and_data_uri():
    text = base64.b64encode(PHOTO).decode()
    wrapped = "\n".join(text[i : i + 76] for i in range(0, len(text), 76))
    assert decode_base64(f"  data:image/jpeg;base64,{wrapped}\r\n", "image") == PHOTO


@pytest.mark.parametrize(
    "text",
    ["@@@not base64", base64.urlsafe_b64encode(b"\xfb\xff\xfe" * 10).decode(), "aGVsbG8"],
    ids=["garbage", "url-safe", "missing-padding"],
)
def test_base64_rejects_non_standard(text):
    with pytest.raises(ApiError) as err:
        decode_base64(text, "image1")
    assert err.value.field == "image1" and err.value.status == 422


def test_empty_base64_is_422():
    with pytest.raises(ApiError, match="empty"):
        decode_base64("  ", "image")


def test_jpeg_decodes_to_bgr_uint8():
    image = decode_image(PHOTO, "image", LIMIT)
    assert image.shape == (480, 640, 3) and image.dtype == np.uint8


@pytest.mark.parametrize(
    "data", [b"", b"hello world", PHOTO[: len(PHOTO) // 3]], ids=["zero-bytes", "text", "truncated"]
)
def test_not_an_image_is_422_naming_the_field(data):
    with pytest.raises(ApiError) as err:
        decode_image(data, "image2", LIMIT)
    assert err.value.field == "image2"


def test_grayscale_alpha_and_16_bit_become_8_bit_bgr():
    gray = np.full((20, 30), 200, np.uint8)
    rgba = np.full((20, 30, 4), 100, np.uint8)
    deep = np.full((20, 30, 3), 60000, np.uint16)
    for array, ext in ((gray, ".png"), (rgba, ".png"), (deep, ".png"), (gray, ".jpg")):
        image = decode_image(encode(array, ext), "image", LIMIT)
        assert image.shape == (20, 30, 3) and image.dtype == np.uint8
    assert decode_image(encode(deep, ".png"), "image", LIMIT).max() == 60000 >> 8


def test_pixel_limit_is_checked_from_the_header():
    big = Image.new("L", (4000, 3000))
    buffer = io.BytesIO()
    big.save(buffer, format="PNG")
    with pytest.raises(ApiError, match="over the limit"):
        decode_image(buffer.getvalue(), "image", 10_000_000)


def test_exif_orientation_is_applied():
    # A landscape photo saved with "rotate 90 CW to display": the decoded image is portrait.
    source = Image.open(io.BytesIO(PHOTO))
    exif = source.getexif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    source.save(buffer, format="JPEG", exif=exif)
    assert decode_image(buffer.getvalue(), "image", LIMIT).shape[:2] == (640, 480)


def radiance_hdr(width: int, height: int) -> bytes:
    """A Radiance HDR: a format OpenCV decodes, whose size Pillow cannot read."""
    return encode(np.zeros((height, width, 3), np.float32), ".hdr")


def test_opencv_itself_refuses_an_image_over_the_limit_before_decoding_it():
    """Behind the header's check, OpenCV's own bound, set before it loads (as service.py does
    for every worker): an HDR's size only OpenCV reads, and it refuses it from the header."""
    script = (
        "from face_api.ops.startup import bound_image_decoding\n"
        "bound_image_decoding(10_000)\n"
        f"{PEAK_KB_SOURCE}"
        "import sys\n"
        "import cv2, numpy as np\n"
        "data = np.frombuffer(sys.stdin.buffer.read(), np.uint8)\n"
        "before = peak_kb()\n"
        "try:\n"
        "    cv2.imdecode(data, cv2.IMREAD_COLOR)\n"
        "except cv2.error as error:\n"
        "    grown = peak_kb() - before\n"
        "    print('CV_IO_MAX_IMAGE' in str(error), grown)\n"
    )
    big = radiance_hdr(8192, 5000)  # 41 MP: 490 MB as float32, had it been decoded
    done = subprocess.run(
        [sys.executable, "-c", script], input=big, capture_output=True, check=True, cwd=ROOT
    )
    bounded, grown_kb = done.stdout.decode().split()
    assert bounded == "True", done.stdout
    assert int(grown_kb) < 50_000  # kilobytes: nothing near the image's size was allocated
