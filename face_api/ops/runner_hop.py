"""What crosses between the API workers and the runner, typed once for both sides.

An API worker calls ``InsightFaceRunner.analyze(images, query, request)`` and
``embed_crops(images, request)`` (``runners/insightface_runner.py``, through
``face_api/http/runner_client.py``); the runner answers a ``Reply`` (``face_api/ops/errors.py``)
of one ``Analysis`` per image, or of the crops' ``Embeddings``; ``info()`` answers a
``RunnerInfo``. ``request`` is the request's ``CallContext`` (``face_api/ops/context.py``).
BentoML validates these models at both ends of the call and pickles what they hold, the NumPy
arrays as they are (out of band, no copy into JSON): neither side converts anything by hand.

A detected face crosses as one float32 row of ``DETECTION_WIDTH`` values, in image pixels: its
box (``BOX``: x1, y1, x2, y2), the detector's score (``SCORE``) and 5 landmarks (``LANDMARKS``:
x, y of the left eye, right eye, nose, left and right mouth corner, as seen). The detector writes
its rows in this layout (``face_api/inference/models.py``), and every reader names the columns
by these.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, PlainValidator, WithJsonSchema

EncodedImage = tuple[str, bytes]  # (the request field it came in, its encoded bytes)

DETECTION_WIDTH = 15
BOX = slice(0, 4)
SCORE = 4
LANDMARKS = slice(5, DETECTION_WIDTH)


class DetectSortType(IntEnum):
    AREA = 0  # largest box first (default)
    CONFIDENCE = 1  # highest detector score first
    LEFT_TO_RIGHT = 2  # by left edge, then top edge


def _float32_matrix(columns: int | None = None) -> Callable[[Any], np.ndarray]:
    def check(value: Any) -> np.ndarray:
        if not isinstance(value, np.ndarray) or value.dtype != np.float32 or value.ndim != 2:
            raise ValueError("expected a 2-d float32 NumPy array")
        if columns is not None and value.shape[1] != columns:
            raise ValueError(f"expected {columns} columns, got {value.shape[1]}")
        return value

    return check


# Arrays as they are (no copy); the JSON schema only names them, for BentoML's client and docs.
_ARRAY_SCHEMA = WithJsonSchema({"type": "array", "items": {"type": "array"}})
Faces = Annotated[np.ndarray, PlainValidator(_float32_matrix(DETECTION_WIDTH)), _ARRAY_SCHEMA]
Matrix = Annotated[np.ndarray, PlainValidator(_float32_matrix()), _ARRAY_SCHEMA]


class FaceQuery(BaseModel):
    """What a request asks of an image: its first ``max_faces`` faces in ``sort_type`` order,
    their embeddings if ``embed``, their quality measures if ``quality`` (which embeds them too:
    the embedding's norm is the quality's main measure)."""

    model_config = ConfigDict(frozen=True)

    max_faces: int
    sort_type: DetectSortType = DetectSortType.AREA
    embed: bool = True
    quality: bool = False


class Analysis(BaseModel):
    """One image's faces: (K, ``DETECTION_WIDTH``) rows in image pixels (boxes clipped to the
    image), in the requested order; their unit embeddings (K, D) when asked for; their quality
    measures (K, ``len(face_api.pipeline.quality.MEASURES)``, in that order) when asked for."""

    model_config = ConfigDict(frozen=True)

    faces: Faces
    embeddings: Matrix | None = None
    height: int
    width: int
    quality: Matrix | None = None


class Embeddings(BaseModel):
    """Already aligned crops' unit embeddings, (N, D) in the crops' order. A model, not a bare
    array: BentoML would type a top-level array with its own tensor schema."""

    vectors: Matrix


# -- what the runner serves (its ``info``), read by ``face_api/http/info.py`` ----------------------
class PackInfo(BaseModel):
    name: str
    tag: str
    files: dict[str, str]  # file name -> sha256
    match_threshold: float
    match_threshold_measured: str  # how the threshold was chosen


class DetectorInfo(BaseModel):
    file: str
    input_size: list[int]
    score_threshold: float
    nms_threshold: float
    max_batch: int  # the most images one detection pass takes


class RecognizerInfo(BaseModel):
    file: str
    input_size: list[int]
    embedding_size: int
    runtime: str


class RunnerInfo(BaseModel):
    """The pack, its models, the providers and device they run on, and the packages installed
    twice over (with the command that repairs them)."""

    pack: PackInfo
    detector: DetectorInfo
    recognizer: RecognizerInfo
    providers: list[str]
    device: Literal["cuda", "cpu"]
    onnxruntime: str
    package_conflicts: list[str]
    repair_command: str | None
