"""What crosses between the API workers and the runner, named once for both sides.

A detected face crosses as one float32 row of ``DETECTION_WIDTH`` values, in image pixels: its
box (``BOX``: x1, y1, x2, y2), the detector's score (``SCORE``) and 5 landmarks (``LANDMARKS``:
x, y of the left eye, right eye, nose, left and right mouth corner, as seen). The detector writes
its rows in this layout (``face_api/inference/models.py``), and every reader names the columns
by these.
"""

from __future__ import annotations

from enum import IntEnum

DETECTION_WIDTH = 15
BOX = slice(0, 4)
SCORE = 4
LANDMARKS = slice(5, DETECTION_WIDTH)


class DetectSortType(IntEnum):
    AREA = 0  # largest box first (default)
    CONFIDENCE = 1  # highest detector score first
    LEFT_TO_RIGHT = 2  # by left edge, then top edge
