"""A peer service driven over HTTP beside ours: InsightFace-REST (its ``/extract``, JSON with
base64 images), on the same model files and photos.

Before anything is timed, the peer's embedding of every identity photo's largest face must agree
with ours (cosine at least ``AGREEMENT``): a ratio against a peer that computes something else
would mean nothing.
"""

from __future__ import annotations

import json
from urllib.parse import urlparse

import httpx
import numpy as np

from benchmarks.harness.cpu import CpuMeter, listening_pid
from benchmarks.harness.load import CLIENT_LIMITS, Workload
from benchmarks.harness.photos import Photo

AGREEMENT = 0.999
NAMES = ("insightface-rest",)


def _extract(photo: Photo, *, embed: bool, limit: int, embed_only: bool = False) -> bytes:
    body = {
        "images": {"data": [photo.b64]},
        "extract_embedding": embed,
        "embed_only": embed_only,
        "limit_faces": limit,
    }
    return json.dumps(body).encode()


def faces_in(answer: dict) -> int:
    return len(answer["data"][0]["faces"])


# The peer's call for each of our workloads: the same photos, the same faces asked for.
PEER_WORKLOADS = {
    "detect": Workload("/extract", body_of=lambda p: _extract(p, embed=False, limit=0)),
    "feature": Workload("/extract", body_of=lambda p: _extract(p, embed=True, limit=1)),
    "multi-embeddings": Workload("/extract", body_of=lambda p: _extract(p, embed=True, limit=750)),
    "embeddings-only": Workload(
        "/extract", body_of=lambda p: _extract(p, embed=True, limit=1, embed_only=True)
    ),
}
PEER_HEADERS = {"content-type": "application/json", "accept": "application/json"}


class Peer:
    def __init__(self, spec: str) -> None:
        name, _, url = spec.partition("=")
        if name not in NAMES or not url:
            raise SystemExit(f"--peer takes NAME=URL with NAME one of {', '.join(NAMES)}")
        self.name, self.url = name, url.rstrip("/")
        self.client = httpx.Client(
            base_url=self.url, headers=PEER_HEADERS, timeout=300, limits=CLIENT_LIMITS
        )
        self.cpu = CpuMeter(listening_pid(urlparse(self.url).port or 80))

    def call(self, workload: str, body: bytes) -> int:
        response = self.client.post(PEER_WORKLOADS[workload].path, content=body)
        if response.status_code != 200:
            raise RuntimeError(f"{self.name}: {response.status_code} {response.text[:200]}")
        return faces_in(response.json())

    def largest_face_embedding(self, photo: Photo) -> np.ndarray:
        response = self.client.post("/extract", content=PEER_WORKLOADS["feature"].body(photo))
        response.raise_for_status()
        vector = np.asarray(response.json()["data"][0]["faces"][0]["vec"], np.float32)
        return vector / np.linalg.norm(vector)

    def check_agreement(self, photos: list[Photo], ours) -> float:
        """The lowest cosine between the peer's and our largest-face embedding over ``photos``;
        refuses to go on below ``AGREEMENT``."""
        worst = 1.0
        for photo in photos:
            cosine = float(self.largest_face_embedding(photo) @ ours(photo))
            worst = min(worst, cosine)
            if cosine < AGREEMENT:
                raise SystemExit(
                    f"{self.name} and this service disagree on {photo.name} (cosine "
                    f"{cosine:.4f} < {AGREEMENT}): not the same models or settings"
                )
        return worst
