"""Writes the bentofile for one image to standard output: `gpu` (bentofile.yaml as it is) or
`cpu` (ONNX Runtime's CPU build and OpenVINO, no CUDA libraries), serving the pack named.

    .venv/bin/python scripts/bentofile.py cpu buffalo_sc_int8 > /tmp/bentofile.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
GPU_ONLY_ENVS = {"NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES"}


def bentofile(image: str, pack: str) -> dict:
    spec = yaml.safe_load((ROOT / "bentofile.yaml").read_text())
    envs = {e["name"]: e["value"] for e in spec["envs"]}
    envs["FACE_MODEL"] = pack  # the image serves the pack the Bento carries
    if image == "cpu":
        spec["name"] = f"{spec['name']}-cpu"
        spec["python"]["requirements_txt"] = "./requirements/cpu.txt"
        envs = {k: v for k, v in envs.items() if k not in GPU_ONLY_ENVS}
        envs["FACE_DEVICE"] = "cpu"
    spec["labels"]["image"] = image
    spec["envs"] = [{"name": k, "value": v} for k, v in envs.items()]
    return spec


if __name__ == "__main__":
    image, pack = sys.argv[1:3]
    if image not in ("gpu", "cpu"):
        raise SystemExit(f"image must be gpu or cpu, not {image!r}")
    yaml.safe_dump(bentofile(image, pack), sys.stdout, sort_keys=False)
