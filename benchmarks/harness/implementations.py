"""The two in-process implementations the served API is measured against."""

from __future__ import annotations

import asyncio
from pathlib import Path

import cv2
import numpy as np

from benchmarks.harness.photos import Photo


class Baseline:
    """insightface's own pipeline, as a user of the library would call it."""

    def __init__(self, pack_dir: Path, providers: list[str]) -> None:
        from insightface.app import FaceAnalysis

        self.full = FaceAnalysis(name=str(pack_dir), providers=providers)
        self.full.prepare(ctx_id=0, det_size=(640, 640))
        self.detector_only = FaceAnalysis(
            name=str(pack_dir), providers=providers, allowed_modules=["detection"]
        )
        self.detector_only.prepare(ctx_id=0, det_size=(640, 640))
        self.recognizer = self.full.models["recognition"]

    @staticmethod
    def decode(photo: Photo) -> np.ndarray:
        return cv2.imdecode(np.frombuffer(photo.data, np.uint8), cv2.IMREAD_COLOR)

    def detect(self, photo: Photo) -> int:
        return len(self.detector_only.get(self.decode(photo)))

    def analyse(self, photo: Photo) -> int:
        return len(self.full.get(self.decode(photo)))

    def embed_crop(self, crop: Photo) -> int:
        self.recognizer.get_feat(self.decode(crop))
        return 1


class InProcess:
    """Our pipeline and engine without HTTP (the code the runner runs, minus its batching)."""

    def __init__(self, engine) -> None:
        from face_api.pipeline.analysis import FacePipeline

        self.pipeline = FacePipeline.in_process(engine)
        self.loop = asyncio.new_event_loop()

    def _analyze(self, photo: Photo, max_faces: int, embed: bool):
        from face_api.ops.runner_hop import FaceQuery

        work = self.pipeline.analyze(
            [("image", photo.data)], FaceQuery(max_faces=max_faces, embed=embed)
        )
        return self.loop.run_until_complete(work)[0]

    def detect(self, photo: Photo) -> int:
        return len(self._analyze(photo, 750, embed=False).faces)

    def analyse(self, photo: Photo, max_faces: int = 750) -> int:
        return len(self._analyze(photo, max_faces, embed=True).faces)

    def largest_face_embedding(self, photo: Photo) -> np.ndarray:
        return self._analyze(photo, 1, embed=True).embeddings[0]

    def embed_crop(self, crop: Photo) -> int:
        work = self.pipeline.embed_crops([("image", crop.data)])
        return len(self.loop.run_until_complete(work))
