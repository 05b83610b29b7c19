"""The photo sets every workload runs on: the identities, the crowds, insightface's t1, and
aligned crops cut exactly as the service cuts them."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np


@dataclass
class Photo:
    name: str
    data: bytes  # encoded (JPEG, or PNG for the crops)

    @property
    def b64(self) -> str:
        return base64.b64encode(self.data).decode("ascii")


def load_photos(photos_dir: Path, quick: bool) -> dict[str, list[Photo]]:
    import insightface

    ok, t1 = cv2.imencode(".jpg", insightface.data.get_image("t1"), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    crowd = [Photo(p.name, p.read_bytes()) for p in sorted((photos_dir / "crowd").glob("*.jpg"))]
    single = [
        Photo(p.name, p.read_bytes()) for p in sorted((photos_dir / "identities").glob("*.jpg"))
    ]
    photos = {"t1": [Photo("t1.jpg", t1.tobytes())], "crowd": crowd, "single": single}
    if quick:
        return {name: items[:1] for name, items in photos.items()}
    return photos


def aligned_crops(photos: list[Photo], engine) -> list[Photo]:
    """PNG crops of each photo's largest face, aligned exactly as the service aligns them."""
    from face_api.ops.runner_hop import DetectSortType
    from face_api.pipeline.faces import align_faces, letterbox, select_faces
    from face_api.pipeline.faces import to_image_coordinates as to_image

    crops = []
    for photo in photos:
        image = cv2.imdecode(np.frombuffer(photo.data, np.uint8), cv2.IMREAD_COLOR)
        boxed = letterbox(image, 640)
        rows = to_image(engine.detector.detect(boxed.canvas[np.newaxis])[0], boxed.scale)
        face = select_faces(rows, DetectSortType.AREA, 1)
        crop = align_faces(image, face, engine.recognizer.crop_size)[0]
        crops.append(Photo(f"{photo.name}.png", cv2.imencode(".png", crop)[1].tobytes()))
    return crops
