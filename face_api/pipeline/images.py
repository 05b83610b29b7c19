"""Request images: base64, which formats are taken, each image's real size before any pixel, and
its decode to 8-bit BGR (EXIF orientation applied).

A decode must cost what its pixels cost. So only formats whose size is read from their header and
whose decode is linear in their pixels are taken (``ACCEPTED_FORMATS``); every other format, and
bytes of no format, is a 422 that names it, before any decoder sees them. Each accepted format's
known amplifiers are bounded from its structure first: a progressive JPEG decodes every scan over
the whole image (a 1 MB file of 17,000 near-empty scans held a core for 41 s), a PNG's compressed
text and colour-profile chunks each inflate up to 8 MB, a TIFF's compression may be a codec of its
own. These run in the runner's decode processes (``face_api/pipeline/decoders.py``), where a
request's deadline can stop them.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import struct
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from face_api.ops.errors import ApiError

# Pillow only reads headers here (size, TIFF tags); its own bomb check is replaced by ours, so
# that the limit is a setting and the answer a clean 422.
Image.MAX_IMAGE_PIXELS = None

ACCEPTED_FORMATS = ("JPEG", "PNG", "WebP", "BMP", "TIFF", "GIF")
ACCEPTED = "JPEG, PNG, WebP, BMP, TIFF or GIF"

# -- JPEG: libjpeg's own progressions use at most 6 scans a component (10 for colour, 24 for
# CMYK); each scan walks every coefficient of the image again, so scans multiply the cost.
JPEG_MAX_SCANS = 64
# Markers in a whole file (APPn, DQT, DHT, SOF, SOS, ...): a camera's or an editor's JPEG has tens.
JPEG_MAX_SEGMENTS = 512
# Frame headers of coding processes libjpeg decodes linearly: baseline, extended and progressive,
# Huffman or arithmetic. Lossless and hierarchical JPEG are refused.
_JPEG_FRAMES = {0xC0: "baseline", 0xC1: "extended", 0xC2: "progressive", 0xC9: "arithmetic",
                0xCA: "progressive arithmetic"}  # fmt: skip
_JPEG_OTHER_FRAMES = {0xC3, 0xC5, 0xC6, 0xC7, 0xCB, 0xCD, 0xCE, 0xCF}
# In entropy-coded data a 0xFF is followed by 0x00 (stuffing), a restart marker or fill bytes;
# anything else is the next segment's marker.
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")

# -- PNG: a chunk walk is a Python loop, so the chunks are counted; libpng inflates each zTXt,
# iTXt and iCCP chunk up to 8 MB (its own limit) for up to 1,000 of them: 8 GB from 8 MB.
PNG_MAX_CHUNKS = 16384
PNG_MAX_COMPRESSED_CHUNKS = 8
_PNG_COMPRESSED = {b"zTXt", b"iTXt", b"iCCP"}

# -- TIFF: the compressions that are plain and linear; JPEG-in-TIFF, JPEG 2000, LZMA, ZSTD, WebP
# and the rest are codecs with costs of their own.
TIFF_COMPRESSIONS = {1: "none", 5: "LZW", 8: "Deflate", 32946: "Deflate", 32773: "PackBits"}

# Formats named in a refusal, by their first bytes (the rest are "not an image").
_OTHER_FORMATS = (
    (b"#?RADIANCE", "Radiance HDR"),
    (b"#?RGBE", "Radiance HDR"),
    (b"v/1\x01", "OpenEXR"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL ", "JPEG XL"),
    (b"II+\x00", "BigTIFF"),
    (b"MM\x00+", "BigTIFF"),
    (b"\x59\xa6\x6a\x95", "Sun raster"),
    (b"8BPS", "Photoshop"),
    (b"%PDF", "PDF"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"qoif", "QOI"),
)
_NETPBM = re.compile(rb"P[1-7Ff]\s")  # PBM, PGM, PPM, PAM, PFM
_ISO_MEDIA = re.compile(rb"....ftyp(....)", re.S)  # AVIF, HEIF, MP4: by the major brand

_DATA_URI = re.compile(r"^data:[\w.+-]+/[\w.+-]+(;[\w-]+=[\w.-]+)*;base64,", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")


def decode_base64(value: str, field: str) -> bytes:
    """Standard base64, tolerating whitespace, line breaks and a ``data:...;base64,`` prefix."""
    try:  # the common case, plain base64, without the two regular expressions' passes
        if value:
            return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        pass
    text = _WHITESPACE.sub("", value)
    text = _DATA_URI.sub("", text, count=1)
    if not text:
        raise ApiError.invalid(field, "image is empty", kind="value_error.empty")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError.invalid(
            field,
            f"not valid standard base64 ({exc}); URL-safe alphabet and missing padding "
            "are not accepted",
            kind="value_error.base64",
        ) from None


@dataclass(frozen=True)
class ImageHeader:
    """What an image's header says: its format and size, read before any pixel is decoded."""

    format: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def inspect_image(data: bytes, field: str, max_pixels: int) -> ImageHeader:
    """The image's format and size from its header, its structure checked against the format's
    amplifiers; a 422 naming ``field`` for bytes of no accepted format, a refused structure, or
    a size over ``max_pixels``. Costs a pass over the bytes at most, never a decode."""
    if not data:
        raise ApiError.invalid(field, "image is empty (zero bytes)", kind="value_error.empty")
    kind = _format_of(data)
    if kind not in ACCEPTED_FORMATS:
        named = f"{kind} images are not accepted" if kind else "not an image"
        raise ApiError.invalid(field, f"{named}: send {ACCEPTED}", kind="value_error.image_format")
    try:
        if kind == "JPEG":
            width, height = _jpeg_size(data)
        elif kind == "PNG":
            width, height = _png_size(data)
        else:
            width, height = _pillow_size(data, kind)
    except _Refused as refused:
        raise ApiError.invalid(field, str(refused), kind="value_error.image") from None
    except (ValueError, OSError, EOFError, struct.error, IndexError, KeyError, TypeError):
        raise ApiError.invalid(field, "not a readable image", kind="value_error.image") from None
    header = ImageHeader(kind, width, height)
    if width < 1 or height < 1:
        raise ApiError.invalid(field, f"{kind} header says {width}x{height}", "value_error.image")
    if header.pixels > max_pixels:
        raise ApiError.invalid(
            field,
            f"image is {width}x{height} = {header.pixels} pixels, over the limit of "
            f"{max_pixels} pixels",
            kind="value_error.image_too_large",
        )
    return header


def decode_image(
    data: bytes, field: str, max_pixels: int, header: ImageHeader | None = None
) -> np.ndarray:
    """An accepted image's bytes to an (H, W, 3) uint8 BGR array, EXIF-rotated; ``header`` is
    what ``inspect_image`` said of them (inspected here when not given)."""
    header = header or inspect_image(data, field, max_pixels)
    try:
        # IMREAD_COLOR: grayscale, alpha and 16-bit become 8-bit BGR, EXIF orientation applied.
        # OpenCV's own bound (``bound_image_decoding``) stands behind the header's check.
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        image = None
    if image is None or image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
        raise ApiError.invalid(
            field, "not a decodable image (or truncated/corrupt)", kind="value_error.image"
        )
    if image.shape[0] * image.shape[1] > max(header.pixels, 1):
        raise ApiError.invalid(
            field,
            f"the {header.format} decoded to more pixels than its header said",
            kind="value_error.image",
        )
    return image


class _Refused(ValueError):
    """A structure refused before decoding; its message says why."""


def _format_of(data: bytes) -> str | None:
    """The format the first bytes name (as OpenCV picks its decoder: by signature), or None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if data.startswith(b"BM"):
        return "BMP"
    if data.startswith((b"II*\x00", b"MM\x00*")):
        return "TIFF"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    for signature, name in _OTHER_FORMATS:
        if data.startswith(signature):
            return name
    if _NETPBM.match(data):
        return "Netpbm"
    if box := _ISO_MEDIA.match(data):
        brand = box[1]
        if brand.startswith(b"avi"):
            return "AVIF"
        if brand.startswith((b"he", b"mif", b"msf")):
            return "HEIF"
        return "ISO media (MP4, or AVIF or HEIF under another brand)"
    return None


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the frame header, after walking every segment: scans and segments
    counted against their bounds, the coding process one that decodes linearly."""
    pos, segments, scans = 2, 0, 0
    size: tuple[int, int] | None = None
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ValueError("a JPEG segment expected")
        marker = data[pos + 1]
        if marker == 0xFF:  # a fill byte
            pos += 1
            continue
        pos += 2
        if marker == 0xD9:  # end of image: what follows is not decoded
            break
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # no length
            continue
        segments += 1
        if segments > JPEG_MAX_SEGMENTS:
            raise _Refused(f"JPEG has more than {JPEG_MAX_SEGMENTS} segments")
        (length,) = struct.unpack_from(">H", data, pos)
        if length < 2:
            raise ValueError("a JPEG segment's length is under 2")
        if marker in _JPEG_FRAMES:
            if size is not None:
                raise _Refused("JPEG has two frame headers")
            height, width = struct.unpack_from(">HH", data, pos + 3)
            if height == 0:
                raise _Refused("JPEG frame header gives no height (DNL): not accepted")
            size = (width, height)
        elif marker in _JPEG_OTHER_FRAMES:
            raise _Refused("lossless and hierarchical JPEG are not accepted")
        pos += length
        if marker == 0xDA:  # a scan: its entropy-coded data runs to the next marker
            scans += 1
            if scans > JPEG_MAX_SCANS:
                raise _Refused(f"JPEG has more than {JPEG_MAX_SCANS} scans")
            if size is None:
                raise ValueError("a JPEG scan before its frame header")
            found = _NEXT_MARKER.search(data, pos)
            if found is None:
                break  # cut short: the decoder judges what is there
            pos = found.start()
    if size is None:
        raise ValueError("no JPEG frame header")
    return size


def _png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from IHDR, after walking the chunks: counted, the compressed ancillary
    ones bounded."""
    if data[12:16] != b"IHDR":
        raise ValueError("PNG does not start with IHDR")
    width, height = struct.unpack_from(">II", data, 16)
    pos, chunks, compressed = 8, 0, 0
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        chunks += 1
        if chunks > PNG_MAX_CHUNKS:
            raise _Refused(f"PNG has more than {PNG_MAX_CHUNKS} chunks")
        if kind in _PNG_COMPRESSED:
            compressed += 1
            if compressed > PNG_MAX_COMPRESSED_CHUNKS:
                raise _Refused(
                    f"PNG has more than {PNG_MAX_COMPRESSED_CHUNKS} compressed text or "
                    "colour-profile chunks"
                )
        if kind == b"IEND":
            break
        pos += 12 + length
    return width, height


def _pillow_size(data: bytes, kind: str) -> tuple[int, int]:
    """(width, height) as Pillow reads the header of a WebP, BMP, TIFF or GIF (and a TIFF's
    compression, which must be a plain one)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(io.BytesIO(data), formats=[kind.upper()]) as header:
            if kind == "TIFF":
                compression = header.tag_v2.get(259, 1)
                if compression not in TIFF_COMPRESSIONS:
                    raise _Refused(
                        f"TIFF compression {compression} is not accepted (only none, LZW, "
                        "Deflate or PackBits)"
                    )
            return header.size
