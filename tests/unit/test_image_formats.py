"""Which images are taken, and what an image may cost (face_api/pipeline/images.py): the
accepted formats sized from their headers; every other format refused by name before any decoder
sees it; each format's amplifiers (a JPEG's scans and segments, a PNG's chunks and compressed
chunks, a TIFF's codec) bounded from the file's structure."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from face_api.ops.errors import ApiError
from face_api.pipeline.images import (
    JPEG_MAX_SCANS,
    JPEG_MAX_SEGMENTS,
    PNG_MAX_CHUNKS,
    PNG_MAX_COMPRESSED_CHUNKS,
    ImageHeader,
    decode_image,
    inspect_image,
)
from tests.paths import IDENTITIES

LIMIT = 40_000_000
PHOTO = Image.open(IDENTITIES[0]).convert("RGB")  # 640x480


def saved(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def refusal(data: bytes, field: str = "image") -> ApiError:
    with pytest.raises(ApiError) as refused:
        inspect_image(data, field, LIMIT)
    assert refused.value.status == 422 and refused.value.field == field
    return refused.value


ACCEPTED = {  # case: (the format it is, how it is made)
    "JPEG": ("JPEG", lambda: saved(PHOTO, "JPEG", quality=90)),
    "progressive JPEG": ("JPEG", lambda: saved(PHOTO, "JPEG", progressive=True)),
    "CMYK progressive JPEG": (
        "JPEG",
        lambda: saved(PHOTO.convert("CMYK"), "JPEG", progressive=True),
    ),
    "PNG": ("PNG", lambda: saved(PHOTO, "PNG")),
    "WebP": ("WebP", lambda: saved(PHOTO, "WEBP")),
    "BMP": ("BMP", lambda: saved(PHOTO, "BMP")),
    "TIFF, LZW": ("TIFF", lambda: saved(PHOTO, "TIFF", compression="tiff_lzw")),
    "TIFF, uncompressed": ("TIFF", lambda: saved(PHOTO, "TIFF")),
    "GIF": ("GIF", lambda: saved(PHOTO.convert("P"), "GIF")),
}


@pytest.mark.parametrize("case", ACCEPTED)
def test_accepted_formats_are_sized_from_their_headers_and_decode(case):
    kind, make = ACCEPTED[case]
    data = make()
    header = inspect_image(data, "image", LIMIT)
    assert header == ImageHeader(kind, 640, 480)
    picture = decode_image(data, "image", LIMIT, header)
    assert picture.shape == (480, 640, 3) and picture.dtype == np.uint8


def hdr() -> bytes:
    return cv2.imencode(".hdr", np.zeros((64, 64, 3), np.float32))[1].tobytes()


def pfm() -> bytes:
    return cv2.imencode(".pfm", np.zeros((64, 64, 3), np.float32))[1].tobytes()


def avif_branded_isom() -> bytes:
    """The start of an AVIF whose major brand is ``isom`` (its compatible brands say avif):
    Pillow could not size it, and OpenCV decoded it on faith."""
    ftyp = b"ftypisom\x00\x00\x00\x00avifmif1miaf"
    return struct.pack(">I", len(ftyp) + 4) + ftyp + b"\x00" * 64


REFUSED = {
    "Radiance HDR": hdr,
    "Netpbm": pfm,
    "PAM": lambda: b"P7\nWIDTH 64\nHEIGHT 64\nDEPTH 3\nMAXVAL 255\nTUPLTYPE RGB\nENDHDR\n",
    "PPM": lambda: cv2.imencode(".ppm", np.zeros((8, 8, 3), np.uint8))[1].tobytes(),
    "JPEG 2000": lambda: saved(PHOTO, "JPEG2000"),
    "ISO media": avif_branded_isom,
    "OpenEXR": lambda: b"v/1\x01\x02\x00\x00\x00" + b"\x00" * 64,
    "JPEG XL": lambda: b"\xff\x0a\xfa\x7f" + b"\x00" * 64,
    "Sun raster": lambda: cv2.imencode(".ras", np.zeros((8, 8, 3), np.uint8))[1].tobytes(),
}


@pytest.mark.parametrize("case", REFUSED)
def test_other_formats_are_refused_by_name_before_any_decoder(case):
    data = REFUSED[case]()
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None or case in (
        "PAM",
        "ISO media",
        "OpenEXR",
        "JPEG XL",
    )  # OpenCV would have decoded most of them
    error = refusal(data, "image2")
    assert error.kind == "value_error.image_format"
    name = "Netpbm" if case in ("PAM", "PPM") else case
    assert error.message.startswith(f"{name}"), error.message
    assert "send JPEG, PNG, WebP, BMP, TIFF or GIF" in error.message


@pytest.mark.parametrize("data", [b"hello world", b"\x00" * 100, b"BMx"], ids=str)
def test_bytes_of_no_format_are_not_an_image(data):
    error = refusal(data)
    assert error.kind in ("value_error.image_format", "value_error.image")


def jpeg_segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of each segment, scans with their entropy-coded data."""
    import re

    segments, pos = [], 2
    while True:
        marker = data[pos + 1]
        if marker == 0xD9:
            return segments
        (length,) = struct.unpack_from(">H", data, pos + 2)
        end = pos + 2 + length
        if marker == 0xDA:
            end = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]").search(data, end).start()
        segments.append((marker, pos, end))
        pos = end


def with_scans_repeated(times: int) -> bytes:
    """A progressive JPEG whose last scan (an AC refinement) is sent ``times`` more: each one
    walks every coefficient of the image again."""
    data = saved(PHOTO, "JPEG", progressive=True)
    segments = jpeg_segments(data)
    _, start, end = [s for s in segments if s[0] == 0xDA][-1]
    return data[:end] + data[start:end] * times + b"\xff\xd9"


def test_a_jpeg_with_more_scans_than_the_bound_is_refused_before_decoding():
    scans = sum(1 for s in jpeg_segments(with_scans_repeated(0)) if s[0] == 0xDA)
    assert scans == 10  # libjpeg's own progression
    inspect_image(with_scans_repeated(JPEG_MAX_SCANS - scans), "image", LIMIT)  # at the bound
    error = refusal(with_scans_repeated(JPEG_MAX_SCANS - scans + 1))
    assert f"more than {JPEG_MAX_SCANS} scans" in error.message


def test_a_jpeg_with_more_segments_than_the_bound_is_refused():
    data = saved(PHOTO, "JPEG")
    comment = b"\xff\xfe\x00\x04hi"
    inspect_image(data[:2] + comment * (JPEG_MAX_SEGMENTS - 10) + data[2:], "image", LIMIT)
    error = refusal(data[:2] + comment * JPEG_MAX_SEGMENTS + data[2:])
    assert f"more than {JPEG_MAX_SEGMENTS} segments" in error.message


def test_lossless_and_hierarchical_jpeg_are_refused():
    data = bytearray(saved(PHOTO, "JPEG"))
    sof = data.find(b"\xff\xc0")
    for marker in (0xC3, 0xC5, 0xCB):
        data[sof + 1] = marker
        assert "lossless and hierarchical" in refusal(bytes(data)).message


def test_a_jpeg_cut_before_its_frame_header_is_not_readable():
    data = saved(PHOTO, "JPEG")
    assert refusal(data[: data.find(b"\xff\xc0")]).kind == "value_error.image"


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png_with(extra: bytes) -> bytes:
    data = saved(PHOTO, "PNG")
    after_header = 8 + 25  # signature, IHDR
    return data[:after_header] + extra + data[after_header:]


def test_a_png_with_more_compressed_chunks_than_the_bound_is_refused():
    """libpng inflates each zTXt, iTXt and iCCP chunk up to 8 MB: 1,000 of them from 8 MB."""
    ztxt = png_chunk(b"zTXt", b"k\x00\x00" + zlib.compress(b"\x00" * 1_000_000, 9))
    inspect_image(png_with(ztxt * PNG_MAX_COMPRESSED_CHUNKS), "image", LIMIT)
    error = refusal(png_with(ztxt * (PNG_MAX_COMPRESSED_CHUNKS + 1)))
    assert "compressed text or colour-profile chunks" in error.message


def test_a_png_with_more_chunks_than_the_bound_is_refused():
    error = refusal(png_with(png_chunk(b"tEXt", b"k\x00v") * PNG_MAX_CHUNKS))
    assert f"more than {PNG_MAX_CHUNKS} chunks" in error.message


def test_a_tiff_in_a_codec_of_its_own_is_refused():
    error = refusal(saved(PHOTO, "TIFF", compression="jpeg"))
    assert "TIFF compression 7 is not accepted" in error.message


def test_the_pixel_limit_is_checked_from_every_accepted_header():
    for case, (_, make) in ACCEPTED.items():
        with pytest.raises(ApiError) as over:
            inspect_image(make(), "image1", 640 * 480 - 1)
        assert over.value.kind == "value_error.image_too_large", case
        assert over.value.field == "image1"


def test_a_png_header_claiming_a_bomb_is_refused_from_it():
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IEND", b"")
    assert refusal(data).kind == "value_error.image_too_large"


def test_an_image_decoding_to_more_pixels_than_its_header_is_refused():
    data = saved(PHOTO, "PNG")
    with pytest.raises(ApiError, match="more pixels than its header said"):
        decode_image(data, "image", LIMIT, ImageHeader("PNG", 64, 48))
