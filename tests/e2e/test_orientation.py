"""EXIF orientation: the same photo stored in each of the 8 orientations gives the same faces,
with every coordinate in the orientation a viewer sees."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from tests.helpers import TRANSPORTS
from tests.paths import IDENTITIES

PHOTO = IDENTITIES[0]
ORIENTATION_TAG = 0x0112
# For each EXIF orientation, how to store the displayed image so that a viewer applying the tag
# shows it upright again: the inverse of the tag's display transform.
STORE = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}
BOX_TOLERANCE_PX = 6
LANDMARK_TOLERANCE_PX = 6


def stored_with_orientation(orientation: int) -> bytes:
    displayed = Image.open(PHOTO).convert("RGB")
    transform = STORE[orientation]
    stored = displayed if transform is None else displayed.transpose(transform)
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    buffer = io.BytesIO()
    stored.save(buffer, format="JPEG", quality=95, exif=exif)
    data = buffer.getvalue()
    # Self-check with Pillow's own reading of the tag: shown upright, the photo's size again.
    assert ImageOps.exif_transpose(Image.open(io.BytesIO(data))).size == displayed.size
    return data


def face_points(response) -> tuple[np.ndarray, np.ndarray]:
    assert response.status_code == 200, response.text
    faces = response.json()["faces"]
    assert len(faces) == 1, faces
    box = faces[0]["boundingBox"]
    landmarks = np.array([[p["x"], p["y"]] for p in faces[0]["landmarks"]])
    return np.array([box["left"], box["top"], box["right"], box["bottom"]]), landmarks


@pytest.fixture(scope="module")
def upright(api) -> tuple[np.ndarray, np.ndarray]:
    return face_points(TRANSPORTS["json"](api, stored_with_orientation(1)))


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("orientation", sorted(STORE))
def test_every_orientation_gives_the_upright_faces(api, upright, orientation, transport):
    box, landmarks = face_points(TRANSPORTS[transport](api, stored_with_orientation(orientation)))
    upright_box, upright_landmarks = upright
    assert np.abs(box - upright_box).max() <= BOX_TOLERANCE_PX, (box, upright_box)
    # Same order too: the left eye is still the left one as seen, whatever the stored pixels.
    assert np.abs(landmarks - upright_landmarks).max() <= LANDMARK_TOLERANCE_PX
    assert landmarks[0, 0] < landmarks[1, 0]
