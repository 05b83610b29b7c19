"""The installed packages that must come one of a kind: ONNX Runtime and OpenCV.

insightface asks for ``onnxruntime`` and ``opencv-python``. uv drops both (``pyproject.toml``'s
``override-dependencies``); pip cannot, so ``pip install .`` ends with ``opencv-python`` beside
``opencv-python-headless``, and with the ``gpu`` extra ``onnxruntime`` beside ``onnxruntime-gpu``.
Each pair shares one import name and overwrites the other's files: whichever was installed last
wins, and with ``onnxruntime`` last the CUDA provider silently disappears. The service checks the
installed distributions at start and names every conflict, with the one command that repairs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata

# Each family's distributions, the one this project wants first.
FAMILIES: dict[str, tuple[str, ...]] = {
    "ONNX Runtime": (
        "onnxruntime-gpu",
        "onnxruntime",
        "onnxruntime-openvino",
        "onnxruntime-directml",
        "ort-nightly",
        "ort-nightly-gpu",
    ),
    "OpenCV": (
        "opencv-python-headless",
        "opencv-python",
        "opencv-contrib-python-headless",
        "opencv-contrib-python",
    ),
}


@dataclass(frozen=True)
class Conflict:
    family: str
    installed: tuple[tuple[str, str], ...]  # (distribution, version), the one to keep first

    @property
    def keep(self) -> tuple[str, str]:
        return self.installed[0]

    def describe(self) -> str:
        found = ", ".join(f"{name} {version}" for name, version in self.installed)
        return f"more than one {self.family} is installed ({found}); they overwrite each other"


def installed_versions() -> dict[str, str]:
    """Every installed distribution's normalized name and version."""
    versions: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            versions.setdefault(name.lower().replace("_", "-"), dist.version)
    return versions


def conflicts(versions: dict[str, str] | None = None) -> list[Conflict]:
    versions = installed_versions() if versions is None else versions
    found = []
    for family, names in FAMILIES.items():
        present = tuple((name, versions[name]) for name in names if name in versions)
        if len(present) > 1:
            found.append(Conflict(family, present))
    return found


def repair_command(found: list[Conflict]) -> str | None:
    """One pip command that leaves one distribution of each family: the GPU runtime where it
    was installed (nobody installs it by accident), the headless OpenCV this project asks for."""
    if not found:
        return None
    remove = [name for conflict in found for name, _ in conflict.installed]
    keep = [f"{name}=={version}" for name, version in (c.keep for c in found)]
    return (
        f"pip uninstall -y {' '.join(remove)} && "
        f"pip install --no-deps --force-reinstall {' '.join(keep)}"
    )


def report(found: list[Conflict]) -> str:
    """The conflicts in one sentence each, and the command that repairs them."""
    if not found:
        return ""
    lines = [conflict.describe() for conflict in found]
    return "; ".join(lines) + f". Repair the environment with: {repair_command(found)}"
