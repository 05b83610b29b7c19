"""A pip-made environment with two OpenCVs or two ONNX Runtimes: named at start, in
/v1/info/server, with the command that repairs it; CUDA asked for and lost is a refusal.

The second distribution is a real ``.dist-info`` record on the server's path, which is what pip
leaves behind (the files of the two share one import name, so only the record tells them apart).
"""

from __future__ import annotations

from pathlib import Path

import httpx

from face_api.ops.environment import installed_versions
from tests.server import API_KEY, run_until_exit, start_server


def fake_distribution(folder: Path, name: str, version: str) -> dict[str, str]:
    record = folder / f"{name.replace('-', '_')}-{version}.dist-info"
    record.mkdir(parents=True)
    (record / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return {"PYTHONPATH": str(folder)}


def test_two_opencvs_are_named_with_the_repair_command(tmp_path, imported_pack):
    env = fake_distribution(tmp_path / "site", "opencv-python", "4.12.0.88")
    headless = installed_versions()["opencv-python-headless"]
    with start_server(tmp_path / "serve.log", {"FACE_API_KEYS": API_KEY, **env}) as server:
        info = httpx.get(f"{server.url}/v1/info/server").json()
        log = server.log()
    assert info["package_conflicts"] == [
        f"more than one OpenCV is installed (opencv-python-headless {headless}, "
        "opencv-python 4.12.0.88); they overwrite each other"
    ]
    assert info["repair_command"] == (
        "pip uninstall -y opencv-python-headless opencv-python && "
        f"pip install --no-deps --force-reinstall opencv-python-headless=={headless}"
    )
    assert info["repair_command"] in log and "WARNING" in log


def test_cuda_asked_for_and_lost_to_a_second_runtime_is_refused(tmp_path, imported_pack):
    # pip installed `onnxruntime` (insightface's requirement) over `onnxruntime-gpu`.
    env = fake_distribution(tmp_path / "site", "onnxruntime-gpu", "1.31.1")
    code, log = run_until_exit(
        tmp_path / "serve.log", {"FACE_API_KEYS": API_KEY, "FACE_DEVICE": "cuda", **env}
    )
    assert code != -1, "server kept running on CPU although CUDA was required"
    assert "refusing to start: FACE_DEVICE=cuda but ONNX Runtime" in log
    assert "more than one ONNX Runtime is installed (onnxruntime-gpu 1.31.1, onnxruntime" in log
    assert "pip install --no-deps --force-reinstall onnxruntime-gpu==1.31.1" in log
