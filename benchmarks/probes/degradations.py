"""Ways of ruining a face photo, each from mild to severe: the set face quality is calibrated on.

Every degradation takes the photo (BGR, uint8), its clean face's row (box, score, landmarks, as
the pipeline answers it) and a seeded random generator, and answers the degraded photo. Sizes
are in pixels of the identity frames (640x480 webcam frames, faces 70-180 px wide); the levels
go from what a phone camera does on a bad day to what no recognizer can read.

    from benchmarks.probes.degradations import DEGRADATIONS
    for degradation in DEGRADATIONS:
        ruined = degradation.apply(image, face, degradation.rng(photo.name))
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

Degrade = Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Degradation:
    kind: str  # "jpeg", "motion blur", ...
    level: str  # the level, as a table shows it: "q 3", "25 px at 45 deg", ...
    severity: int  # 1 (mild) to 4 (severe), for the tables' order
    apply: Degrade

    @property
    def name(self) -> str:
        return f"{self.kind} {self.level}"

    def rng(self, photo: str) -> np.random.Generator:
        """The same draws for the same photo and degradation, run after run."""
        return np.random.default_rng(zlib.crc32(f"{photo}/{self.name}".encode()))


def _u8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def jpeg(quality: int) -> Degrade:
    def apply(image: np.ndarray, face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        assert ok
        return cv2.imdecode(data, cv2.IMREAD_COLOR)

    return apply


def motion(length: int, angle: float | None = None) -> Degrade:
    """A straight streak of ``length`` pixels; ``angle`` None: one of 0, 45, 90, 135 degrees
    drawn per photo (the camera or the head moves any way)."""

    def apply(image: np.ndarray, face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        theta = float(rng.choice([0, 45, 90, 135])) if angle is None else angle
        kernel = np.zeros((length, length), np.float32)
        centre = (length - 1) / 2.0
        dx, dy = np.cos(np.radians(theta)) * centre, -np.sin(np.radians(theta)) * centre
        start = (int(round(centre - dx)), int(round(centre - dy)))
        end = (int(round(centre + dx)), int(round(centre + dy)))
        cv2.line(kernel, start, end, 1.0, 1)
        return cv2.filter2D(image, -1, kernel / kernel.sum())

    return apply


def defocus(radius: int) -> Degrade:
    """An out-of-focus lens: a disk of ``radius`` pixels."""
    size = 2 * radius + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)).astype(np.float32)
    kernel /= kernel.sum()
    return lambda image, face, rng: cv2.filter2D(image, -1, kernel)


def gaussian_blur(sigma: float) -> Degrade:
    return lambda image, face, rng: cv2.GaussianBlur(image, (0, 0), sigma)


def noise(sigma: float) -> Degrade:
    def apply(image: np.ndarray, face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return _u8(image + rng.normal(0.0, sigma, image.shape))

    return apply


def low_light(gain: float, read_noise: float) -> Degrade:
    """A dark scene: the light cut to ``gain``, shot noise of the few photons left and the
    sensor's read noise, then quantized to 8 bits, as a camera without a flash sees it."""

    def apply(image: np.ndarray, face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        dark = image.astype(np.float64) * gain
        shot = rng.normal(0.0, 1.0, image.shape) * np.sqrt(np.maximum(dark, 0.0))
        return _u8(dark + shot + rng.normal(0.0, read_noise, image.shape))

    return apply


def overexposed(gain: float) -> Degrade:
    return lambda image, face, rng: _u8(image.astype(np.float32) * gain)


def low_contrast(keep: float) -> Degrade:
    """Haze or a washed-out print: the picture blended towards mid grey, ``keep`` of it left."""
    return lambda image, face, rng: _u8(image.astype(np.float32) * keep + 128.0 * (1.0 - keep))


def _face_width(face: np.ndarray) -> float:
    return float(face[2] - face[0])


def down_up(face_px: int) -> Degrade:
    """Shrunk until the face is ``face_px`` wide, then enlarged back: a small face in a big photo
    that someone cropped and enlarged (the image keeps its size; the face loses its detail)."""

    def apply(image: np.ndarray, face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        height, width = image.shape[:2]
        scale = face_px / _face_width(face)
        small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)

    return apply


def small_face(face_px: int) -> Degrade:
    """The face ``face_px`` wide in a photo of the frame's size, as in a group photo: the frame
    shrunk and laid on a plain background of its mean colour (so that the detector finds no
    other, larger face)."""

    def apply(image: np.ndarray, face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        height, width = image.shape[:2]
        scale = face_px / _face_width(face)
        small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        out = np.empty_like(image)
        out[:] = image.reshape(-1, 3).mean(axis=0).astype(np.uint8)
        top, left = (height - small.shape[0]) // 2, (width - small.shape[1]) // 2
        out[top : top + small.shape[0], left : left + small.shape[1]] = small
        return out

    return apply


def occluded(part: str) -> Degrade:
    """Part of the face hidden by a flat patch: ``mouth`` (a mask over the nose tip and mouth),
    ``eyes`` (a bar over both eyes), ``half`` (a hand over one side), ``patch`` (a random quarter
    of the face)."""

    def apply(image: np.ndarray, face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = image.copy()
        x1, y1, x2, y2 = (float(v) for v in face[:4])
        w, h = x2 - x1, y2 - y1
        eyes = face[5:9].reshape(2, 2)
        nose = face[9:11]
        colour = tuple(int(c) for c in rng.integers(30, 220, 3))
        if part == "mouth":
            box = (x1, nose[1] - 0.05 * h, x2, y2 + 0.05 * h)
        elif part == "eyes":
            top, bottom = eyes[:, 1].min() - 0.12 * h, eyes[:, 1].max() + 0.12 * h
            box = (x1, top, x2, bottom)
        elif part == "half":
            mid = (x1 + x2) / 2 + float(rng.uniform(-0.05, 0.05)) * w
            left_side = rng.random() < 0.5
            box = (x1 - 0.05 * w, y1, mid, y2) if left_side else (mid, y1, x2 + 0.05 * w, y2)
        else:  # a quarter of the face's area, anywhere on it
            pw, ph = 0.5 * w, 0.5 * h
            left, top = x1 + float(rng.uniform(0, w - pw)), y1 + float(rng.uniform(0, h - ph))
            box = (left, top, left + pw, top + ph)
        corners = [int(round(v)) for v in box]
        cv2.rectangle(out, tuple(corners[:2]), tuple(corners[2:]), colour, -1)
        return out

    return apply


def both(first: Degrade, second: Degrade) -> Degrade:
    return lambda image, face, rng: second(first(image, face, rng), face, rng)


DEGRADATIONS: list[Degradation] = [
    Degradation("jpeg", "q 30", 1, jpeg(30)),
    Degradation("jpeg", "q 15", 2, jpeg(15)),
    Degradation("jpeg", "q 8", 3, jpeg(8)),
    Degradation("jpeg", "q 5", 3, jpeg(5)),
    Degradation("jpeg", "q 3", 4, jpeg(3)),
    Degradation("motion blur", "9 px", 1, motion(9)),
    Degradation("motion blur", "15 px", 2, motion(15)),
    Degradation("motion blur", "25 px", 3, motion(25)),
    Degradation("motion blur", "25 px horizontal", 3, motion(25, 0)),
    Degradation("motion blur", "35 px", 4, motion(35)),
    Degradation("defocus", "radius 2", 1, defocus(2)),
    Degradation("defocus", "radius 4", 2, defocus(4)),
    Degradation("defocus", "radius 6", 3, defocus(6)),
    Degradation("defocus", "radius 9", 4, defocus(9)),
    Degradation("gaussian blur", "sigma 2", 1, gaussian_blur(2)),
    Degradation("gaussian blur", "sigma 3.5", 2, gaussian_blur(3.5)),
    Degradation("gaussian blur", "sigma 5", 3, gaussian_blur(5)),
    Degradation("noise", "sigma 10", 1, noise(10)),
    Degradation("noise", "sigma 20", 2, noise(20)),
    Degradation("noise", "sigma 40", 3, noise(40)),
    Degradation("noise", "sigma 60", 4, noise(60)),
    Degradation("low light", "x0.3", 1, low_light(0.3, 2)),
    Degradation("low light", "x0.15", 2, low_light(0.15, 3)),
    Degradation("low light", "x0.07", 3, low_light(0.07, 3)),
    Degradation("low light", "x0.035", 4, low_light(0.035, 3)),
    Degradation("overexposure", "x2", 1, overexposed(2)),
    Degradation("overexposure", "x3", 2, overexposed(3)),
    Degradation("overexposure", "x4", 3, overexposed(4)),
    Degradation("overexposure", "x6", 4, overexposed(6)),
    Degradation("low contrast", "50%", 1, low_contrast(0.5)),
    Degradation("low contrast", "20%", 3, low_contrast(0.2)),
    Degradation("down-up", "face 48 px", 1, down_up(48)),
    Degradation("down-up", "face 32 px", 2, down_up(32)),
    Degradation("down-up", "face 24 px", 3, down_up(24)),
    Degradation("down-up", "face 16 px", 4, down_up(16)),
    Degradation("small face", "48 px", 1, small_face(48)),
    Degradation("small face", "32 px", 2, small_face(32)),
    Degradation("small face", "28 px", 2, small_face(28)),
    Degradation("small face", "24 px", 3, small_face(24)),
    Degradation("small face", "20 px", 3, small_face(20)),
    Degradation("small face", "16 px", 4, small_face(16)),
    Degradation("occlusion", "random quarter", 1, occluded("patch")),
    Degradation("occlusion", "mouth and nose", 2, occluded("mouth")),
    Degradation("occlusion", "one half", 3, occluded("half")),
    Degradation("occlusion", "eyes", 4, occluded("eyes")),
    Degradation("combined", "jpeg q 15 + blur sigma 2", 2, both(gaussian_blur(2), jpeg(15))),
    Degradation("combined", "low light x0.15 + jpeg q 30", 3, both(low_light(0.15, 3), jpeg(30))),
    Degradation("combined", "down-up 32 px + jpeg q 15", 3, both(down_up(32), jpeg(15))),
    Degradation("combined", "motion 15 px + noise 20", 3, both(motion(15), noise(20))),
    Degradation("combined", "overexposure x2 + jpeg q 8", 3, both(overexposed(2), jpeg(8))),
    Degradation(
        "combined",
        "defocus 4 + noise 20 + jpeg q 15",
        4,
        both(both(defocus(4), noise(20)), jpeg(15)),
    ),
]
