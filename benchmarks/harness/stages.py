"""One ``/v1/feature`` request broken into stages, from the service's ``Server-Timing`` header."""

from __future__ import annotations

import statistics
import time

import httpx

from benchmarks.harness.load import WORKLOADS, post
from benchmarks.harness.photos import Photo

STAGES = (
    "parse",
    "base64",
    "hop",
    "decode",
    "letterbox",
    "detect-queue",
    "detect",
    "nms",
    "align",
    "embed-queue",
    "embed",
    "response",
)


def stage_breakdown(client: httpx.Client, photos: list[Photo], repeats: int) -> list[str]:
    """One ``/v1/feature`` request in stages: the median of each ``Server-Timing`` stage over
    every single-face photo, and the client's own time around it."""
    per_stage: dict[str, list[float]] = {}
    for _ in range(repeats):
        for photo in photos:
            t0 = time.perf_counter()
            _, response = post(client, "feature", WORKLOADS["feature"].body(photo))
            per_stage.setdefault("client round trip", []).append(1000 * (time.perf_counter() - t0))
            for item in response.headers.get("server-timing", "").split(","):
                name, _, duration = item.strip().partition(";dur=")
                if duration:
                    per_stage.setdefault(name, []).append(float(duration))
    medians = {name: statistics.median(values) for name, values in per_stage.items()}
    rows = [
        "| stage | median ms |",
        "|---|---|",
        *(f"| {name} | {medians[name]:.2f} |" for name in STAGES if name in medians),
    ]
    named = sum(medians.get(name, 0.0) for name in STAGES)
    rows += [
        f"| sum of the stages above | {named:.2f} |",
        f"| server total (first byte in to answer out) | {medians.get('total', 0):.2f} |",
        f"| client round trip (HTTP, connection, client) | {medians['client round trip']:.2f} |",
    ]
    return rows
