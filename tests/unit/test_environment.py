"""The one-of-a-kind packages: conflicts found from the installed distributions, and the fix."""

from __future__ import annotations

from face_api.ops.environment import conflicts, installed_versions, repair_command, report


def test_this_environment_has_one_onnx_runtime_and_one_opencv():
    versions = installed_versions()
    assert "onnxruntime" in versions and "opencv-python-headless" in versions
    assert conflicts(versions) == []
    assert repair_command([]) is None and report([]) == ""


def test_pip_beside_insightface_leaves_both_opencvs_and_the_fix_keeps_headless():
    found = conflicts({"opencv-python": "4.12.0.88", "opencv-python-headless": "4.13.0.92"})
    assert [c.family for c in found] == ["OpenCV"]
    assert "opencv-python-headless 4.13.0.92, opencv-python 4.12.0.88" in found[0].describe()
    assert repair_command(found) == (
        "pip uninstall -y opencv-python-headless opencv-python && "
        "pip install --no-deps --force-reinstall opencv-python-headless==4.13.0.92"
    )


def test_the_gpu_runtime_is_the_one_kept():
    versions = {
        "onnxruntime": "1.32.0",
        "onnxruntime-gpu": "1.31.1",
        "opencv-python": "4.12.0.88",
        "opencv-python-headless": "4.13.0.92",
    }
    found = conflicts(versions)
    assert [c.family for c in found] == ["ONNX Runtime", "OpenCV"]
    command = repair_command(found)
    assert command.startswith(
        "pip uninstall -y onnxruntime-gpu onnxruntime opencv-python-headless opencv-python && "
    )
    assert command.endswith("onnxruntime-gpu==1.31.1 opencv-python-headless==4.13.0.92")
    assert "Repair the environment with: pip uninstall" in report(found)
