"""Batch sizes rounded up to a few shapes, for sessions that pay for every new input shape.

On CUDA every new batch size is a new input shape: a cuDNN algorithm search and new kernels. So
the detector's and the recognizer's passes are padded with blank rows to one of a few bucket
sizes, each run once at start-up (``FaceEngine._pads_batches`` gives the measured cost).
"""

from __future__ import annotations

import numpy as np


def batch_buckets(largest: int) -> list[int]:
    """Powers of two up to ``largest``, and ``largest`` itself."""
    sizes = [1 << i for i in range(largest.bit_length()) if 1 << i < largest]
    return [*sizes, largest]


def bucket_for(n: int, largest: int) -> int:
    return next(size for size in batch_buckets(largest) if size >= n)


def padded_to_bucket(batch: np.ndarray, largest: int) -> np.ndarray:
    """``batch`` (at most ``largest`` rows) with zero rows appended up to its bucket size; the
    batch itself when its size is a bucket size already."""
    size = bucket_for(len(batch), largest)
    if size == len(batch):
        return batch
    padded = np.zeros((size, *batch.shape[1:]), batch.dtype)
    padded[: len(batch)] = batch
    return padded
