"""Decoding request images: base64, limits from the header, EXIF orientation, 8-bit BGR.

The runner decodes (the API worker hands it the encoded bytes the client sent), once per image;
the pixels stay in the runner's process.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from face_api.ops.errors import ApiError

# Pillow is only used to read the header (size, format) before OpenCV decodes; its own bomb check
# is replaced by ours so that the limit is a setting and the answer a clean 422.
Image.MAX_IMAGE_PIXELS = None

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


# Formats OpenCV decodes whose size Pillow cannot read, by their first bytes: Radiance HDR, PAM,
# PFM, OpenEXR, JPEG XL (bare and boxed).
_OPENCV_ONLY_SIGNATURES = (
    b"#?",
    b"P7",
    b"PF",
    b"Pf",
    b"\x76\x2f\x31\x01",
    b"\xff\x0a",
    b"\x00\x00\x00\x0cJXL ",
)


def checked_pixels(data: bytes, field: str, max_pixels: int) -> int:
    """The pixels decoding ``data`` will hold, read from its header before any pixel is
    allocated: a decompression bomb, or a header Pillow cannot read, is refused (422). All of
    ``max_pixels`` for a format only OpenCV reads (nothing smaller is known: OpenCV's own bound
    stops more); none for bytes no decoder takes (their decode fails at once)."""
    try:
        size = header_size(data)
    except ValueError:
        raise ApiError.invalid(field, "not a readable image", kind="value_error.image") from None
    if size is None:
        return max_pixels if data.startswith(_OPENCV_ONLY_SIGNATURES) else 0
    width, height = size
    if width * height > max_pixels:
        raise ApiError.invalid(
            field,
            f"image is {width}x{height} = {width * height} pixels, over the limit of "
            f"{max_pixels} pixels",
            kind="value_error.image_too_large",
        )
    return width * height


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the image's header, without decoding; None for a format Pillow does
    not know. Raises ``ValueError`` for a header Pillow cannot read."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as header:
                return header.size
    except UnidentifiedImageError:
        return None
    except Exception as exc:  # noqa: BLE001 - any header failure means "not an image we can read"
        raise ValueError(str(exc)) from None


def decode_image(data: bytes, field: str, max_pixels: int, checked: bool = False) -> np.ndarray:
    """Bytes of any format OpenCV reads to an (H, W, 3) uint8 BGR array, EXIF-rotated; its header
    checked first (``checked_pixels``) unless the caller did."""
    if not data:
        raise ApiError.invalid(field, "image is empty (zero bytes)", kind="value_error.empty")
    if not checked:
        checked_pixels(data, field, max_pixels)
    buffer = np.frombuffer(data, dtype=np.uint8)
    try:
        # IMREAD_COLOR: grayscale, alpha and 16-bit become 8-bit BGR, EXIF orientation applied.
        image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    except cv2.error as exc:
        # OpenCV's own bound (``bound_image_decoding``), checked from the header it reads: for
        # a format whose size Pillow could not read first.
        if "CV_IO_MAX_IMAGE" in str(exc):
            raise ApiError.invalid(
                field,
                f"image is over the limit of {max_pixels} pixels",
                kind="value_error.image_too_large",
            ) from None
        image = None
    if image is None or image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
        raise ApiError.invalid(
            field, "not a decodable image (or truncated/corrupt)", kind="value_error.image"
        )
    if image.shape[0] * image.shape[1] > max_pixels:
        raise ApiError.invalid(
            field,
            f"image is over the limit of {max_pixels} pixels",
            kind="value_error.image_too_large",
        )
    return image
