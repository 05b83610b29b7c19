"""Probe: where a many-face request spends its time in process (detect, align, embed)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import cv2
import numpy as np

from face_api.faces import align_faces, letterbox, to_image_coordinates
from face_api.settings import Settings
from runners.engine import FaceEngine


def ms(fn, runs: int = 3) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(runs):
        fn()
    return 1000 * (time.perf_counter() - t0) / runs


def probe(pack: Path, image: np.ndarray, device: str, threads: int) -> None:
    engine = FaceEngine(pack, Settings(device=device, intra_op_threads=threads))
    canvas = letterbox(image, 640)
    padded = engine.detect(canvas.canvas[np.newaxis])[0]
    faces = to_image_coordinates(padded[padded[:, 4] > 0], canvas.scale)
    crops = align_faces(image, faces, 112)

    def detect():
        return engine.detect(canvas.canvas[np.newaxis])

    def align():
        return align_faces(image, faces, 112)

    def both():
        return detect(), align()

    print(f"{device} intra-op threads={threads} faces={len(faces)}", flush=True)
    print(
        f"  detect {ms(detect):.1f} ms, align {ms(align):.1f} ms, "
        f"embed {ms(lambda: engine.embed(crops)):.1f} ms, detect+align {ms(both):.1f} ms",
        flush=True,
    )
    cv2.setNumThreads(1)
    print(
        f"  OpenCV 1 thread: align {ms(align):.1f} ms, detect+align {ms(both):.1f} ms", flush=True
    )
    cv2.setNumThreads(-1)


if __name__ == "__main__":
    pack_dir, photo, device = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    image = cv2.imread(str(photo))
    for threads in (16, 1):
        probe(pack_dir, image, device, threads)
