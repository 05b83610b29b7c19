"""Image bytes fuzzed against a real server (hypothesis): truncations, repeated segments and
chunks, header lies and flipped bytes of every accepted format. Each request is answered 200 or a
422 naming the field, never anything else, and costs the runner (its processes and their decode
processes) no more CPU time and memory than a budget per pixel its header claims: a decode costs
what its pixels cost."""

from __future__ import annotations

import io
import re
import struct
import zlib

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from tests.paths import IDENTITIES
from tests.server import cpu_seconds, peak_rss_bytes, reset_peak_rss

RUNNER = "InsightFaceRunner"
# The budget of one request: a fixed part (the request's own work: detection on a 640x640 canvas,
# the hop) and a part per pixel the header claims (decode, letterbox).
CPU_FIXED_S, CPU_PER_PIXEL_S = 0.5, 60e-9
MEMORY_FIXED, MEMORY_PER_PIXEL = 80 * 1024 * 1024, 12
MAX_SIDE = 7000  # header lies up to 49 MP: over the 40 MP limit too


def _photo(size: tuple[int, int]) -> Image.Image:
    return Image.open(IDENTITIES[0]).convert("RGB").resize(size)


def _saved(size: tuple[int, int], fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image = _photo(size)
    image = image.convert("P") if fmt == "GIF" else image
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


SEEDS = {
    "jpeg": _saved((640, 480), "JPEG", quality=85),
    "progressive jpeg": _saved((640, 480), "JPEG", progressive=True),
    "small progressive jpeg": _saved((64, 48), "JPEG", progressive=True),
    "png": _saved((320, 240), "PNG"),
    "small png": _saved((64, 48), "PNG"),
    "webp": _saved((320, 240), "WEBP"),
    "gif": _saved((160, 120), "GIF"),
    "bmp": _saved((160, 120), "BMP"),
    "tiff": _saved((160, 120), "TIFF", compression="tiff_lzw"),
}


def jpeg_segments(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each JPEG segment after SOI, scans with their entropy-coded data."""
    next_marker = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
    segments, pos = [], 2
    while pos + 4 <= len(data) and data[pos + 1] != 0xD9:
        (length,) = struct.unpack_from(">H", data, pos + 2)
        end = pos + 2 + length
        if data[pos + 1] == 0xDA:
            found = next_marker.search(data, end)
            end = found.start() if found else len(data)
        segments.append((pos, end))
        pos = end
    return segments


def png_chunks(data: bytes) -> list[tuple[int, int]]:
    chunks, pos = [], 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        chunks.append((pos, pos + 12 + length))
        pos += 12 + length
    return chunks


def pieces(data: bytes) -> list[tuple[int, int]]:
    """The pieces a format is made of: JPEG segments, PNG chunks, else 64-byte runs."""
    if data.startswith(b"\xff\xd8"):
        return jpeg_segments(data)
    if data.startswith(b"\x89PNG"):
        return png_chunks(data)
    return [(i, min(i + 64, len(data))) for i in range(0, len(data), 64)]


def lie_about_size(data: bytes, width: int, height: int) -> bytes:
    """The header says ``width`` x ``height``, the data stays the same."""
    out = bytearray(data)
    if data.startswith(b"\xff\xd8"):
        for start, _ in jpeg_segments(data):
            if out[start + 1] in (0xC0, 0xC1, 0xC2):
                struct.pack_into(">HH", out, start + 5, min(height, 65535), min(width, 65535))
    elif data.startswith(b"\x89PNG"):
        struct.pack_into(">II", out, 16, width, height)
        struct.pack_into(">I", out, 29, zlib.crc32(bytes(out[12:29])) & 0xFFFFFFFF)
    elif data.startswith(b"BM"):
        struct.pack_into("<ii", out, 18, width, height)
    elif data.startswith(b"GIF"):
        struct.pack_into("<HH", out, 6, min(width, 65535), min(height, 65535))
    return bytes(out)


@st.composite
def hostile_images(draw: st.DrawFn) -> bytes:
    data = SEEDS[draw(st.sampled_from(sorted(SEEDS)))]
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["truncate", "repeat", "lie", "flip"]))
        if kind == "truncate":
            data = data[: draw(st.integers(0, len(data)))]
        elif kind == "repeat" and (found := pieces(data)):
            start, end = draw(st.sampled_from(found))
            times = draw(st.integers(1, min(2000, 400_000 // max(1, end - start))))
            data = data[:end] + data[start:end] * times + data[end:]
        elif kind == "lie":
            width = draw(st.integers(1, MAX_SIDE))
            data = lie_about_size(data, width, draw(st.integers(1, MAX_SIDE)))
        elif kind == "flip" and data:
            at = draw(st.integers(0, len(data) - 1))
            data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
    return data


def claimed_pixels(data: bytes) -> int:
    """What the header claims, as Pillow reads it (0 where it reads none)."""
    try:
        with Image.open(io.BytesIO(data)) as header:
            width, height = header.size
    except Exception:  # noqa: BLE001 - no header Pillow reads: nothing claimed
        return 0
    return min(width * height, 40_000_000)  # past the limit: refused from the header


def scans_repeated(data: bytes, times: int) -> bytes:
    """A progressive JPEG's last scan sent ``times`` more (each walks every coefficient again)."""
    start, end = [(s, e) for s, e in jpeg_segments(data) if data[s + 1] == 0xDA][-1]
    return data[:end] + data[start:end] * times + data[end:]


def png_with_compressed_chunks(count: int) -> bytes:
    """A PNG with ``count`` zTXt chunks that inflate to 4 MB each (libpng inflates them all)."""
    data = SEEDS["small png"]
    text = b"k\x00\x00" + zlib.compress(b"\x00" * 4_000_000, 9)
    chunk = struct.pack(">I", len(text)) + b"zTXt" + text
    chunk += struct.pack(">I", zlib.crc32(chunk[4:]) & 0xFFFFFFFF)
    return data[:33] + chunk * count + data[33:]


# The known attacks, always among the examples: each cost far past its budget before it was
# bounded (the first 41 s of a core at 1 MB).
SCAN_BOMB = scans_repeated(lie_about_size(SEEDS["small progressive jpeg"], 6000, 6000), 3000)
AT_THE_SCAN_BOUND = scans_repeated(lie_about_size(SEEDS["small progressive jpeg"], 6000, 6000), 54)
INFLATE_BOMB = png_with_compressed_chunks(200)


@pytest.fixture(scope="module")
def warm(api) -> None:
    """Every decode process has served once (imports and first allocations are not a request's)."""
    for seed in SEEDS.values():
        api.post("/v1/file/detect", files={"image": ("seed", seed)})


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,  # the same examples every run: a failure is reproduced, never flaky
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=hostile_images())
@example(data=SCAN_BOMB)
@example(data=AT_THE_SCAN_BOUND)
@example(data=INFLATE_BOMB)
def test_fuzzed_images_cost_what_their_pixels_cost(server, api, warm, data):
    pixels = claimed_pixels(data)
    reset_peak_rss(server)
    resting = peak_rss_bytes(server)[RUNNER]
    before = cpu_seconds(server, RUNNER)
    response = api.post("/v1/file/detect", files={"image": ("fuzzed", data)}, timeout=120)
    spent = cpu_seconds(server, RUNNER) - before
    grown = peak_rss_bytes(server)[RUNNER] - resting
    assert response.status_code in (200, 422), (response.status_code, response.text[:300])
    if response.status_code == 422:
        assert response.json()["detail"][0]["loc"] == ["body", "image"]
    assert spent <= CPU_FIXED_S + CPU_PER_PIXEL_S * pixels, (spent, pixels, len(data))
    assert grown <= MEMORY_FIXED + MEMORY_PER_PIXEL * pixels, (grown / 2**20, pixels, len(data))
    assert httpx.get(f"{server.url}/v1/health", timeout=10).status_code == 200
