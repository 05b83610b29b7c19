"""The Bento artifact, checked without a Docker daemon: packages, image, models, serving."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import tarfile

import httpx
import pytest
import yaml

from face_api.inference.packs import sha256_of
from tests.helpers import b64
from tests.paths import DEFAULT_PACK, DEFAULT_PACK_DIR, IDENTITIES, ROOT
from tests.server import start_server

UV = str(ROOT / ".venv/bin/uv")
BENTOFILE = yaml.safe_load((ROOT / "bentofile.yaml").read_text())


def requirement_names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.add(re.split(r"[\s=<>!~;\[]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return names


# What each image's packages must and must not hold: (ONNX Runtime, packages it needs, never).
IMAGES = {
    "gpu": (
        "onnxruntime-gpu",
        {"nvidia-cudnn-cu13", "nvidia-cuda-runtime"},
        {"onnxruntime", "openvino"},
    ),
    "cpu": ("onnxruntime", {"openvino"}, {"onnxruntime-gpu", "nvidia-cudnn-cu13"}),
}


@pytest.fixture(scope="module", params=list(IMAGES))
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`scripts/build-bento.sh [cpu]` into a fresh BentoML home, from the bundled pack."""
    image = request.param
    home = tmp_path_factory.mktemp(f"bentoml-home-{image}")
    env = {**os.environ, "BENTOML_HOME": str(home), "FACE_MODEL": DEFAULT_PACK}
    command = ["./scripts/build-bento.sh"] + ([] if image == "gpu" else [image])
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    tag = re.search(r'Successfully built Bento\(tag="([^"]+)"\)', result.stdout).group(1)
    name, version = tag.split(":")
    path = home / "bentos" / name / version
    return {"image": image, "tag": tag, "home": home, "env": env, "path": path}


def test_project_env_has_exactly_one_onnxruntime_and_one_opencv():
    installed = {d.metadata["Name"].lower() for d in importlib.metadata.distributions()}
    runtimes = installed & {"onnxruntime", "onnxruntime-gpu"}
    opencvs = installed & {"opencv-python", "opencv-python-headless", "opencv-contrib-python"}
    assert len(runtimes) == 1, runtimes
    assert opencvs == {"opencv-python-headless"}


@pytest.mark.parametrize("image", list(IMAGES))
def test_committed_requirements_match_the_lock(tmp_path, image):
    out = tmp_path / f"{image}.txt"
    env = {**os.environ, "PATH": f"{ROOT / '.venv/bin'}:{os.environ['PATH']}"}
    subprocess.run(
        [str(ROOT / "scripts/export-requirements.sh"), image, str(out)],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
    )
    assert out.read_text() == (ROOT / f"requirements/{image}.txt").read_text(), (
        f"requirements/{image}.txt is stale: run scripts/export-requirements.sh"
    )


def test_requirements_name_one_runtime_and_headless_opencv(built):
    runtime, needed, never = IMAGES[built["image"]]
    names = requirement_names((built["path"] / "env/python/requirements.txt").read_text())
    assert runtime in names and "opencv-python-headless" in names
    assert "opencv-python" not in names and not names & never
    assert {"insightface", "bentoml"} | needed <= names
    if built["image"] == "cpu":  # no CUDA library at all
        assert not [n for n in names if n.startswith("nvidia-") and n != "nvidia-ml-py"]
    for line in (built["path"] / "env/python/requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            assert "==" in line, f"unpinned: {line}"


def test_image_install_drops_insightfaces_cpu_runtime_and_gui_opencv(built, tmp_path):
    """Resolve the image's own install command (dry run) where the Dockerfile runs it: in ./src,
    which holds pyproject.toml (and so its overrides) by then. test_containers.py builds it for
    real."""
    dockerfile = (built["path"] / "env/docker/Dockerfile").read_text()
    install = dockerfile.index("uv --directory $INSTALL_ROOT pip install -r")
    copied = dockerfile.index("./src/pyproject.toml ./src/pyproject.toml")
    assert copied < install, "pyproject.toml arrives after the install: its overrides never apply"
    assert (built["path"] / "src/pyproject.toml").is_file()
    subprocess.run([UV, "venv", "-q", str(tmp_path / "venv")], check=True)
    result = subprocess.run(
        [
            UV,
            "--directory",
            "src",
            "pip",
            "install",
            "--dry-run",
            "-r",
            str(built["path"] / "env/python/requirements.txt"),
        ],
        cwd=built["path"],
        env={**os.environ, "VIRTUAL_ENV": str(tmp_path / "venv")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    would_install = set(re.findall(r"^ \+ ([\w.-]+)==", result.stderr, flags=re.M))
    runtime, needed, never = IMAGES[built["image"]]
    assert {runtime, "opencv-python-headless", "insightface"} | needed <= would_install
    assert not would_install & ({"opencv-python"} | never)


def test_dockerfile_uses_the_declared_base_image(built):
    dockerfile = (built["path"] / "env/docker/Dockerfile").read_text()
    assert re.search(rf"^FROM {re.escape(BENTOFILE['docker']['base_image'])}\b", dockerfile, re.M)
    envs = {
        e["name"]: e["value"]
        for e in yaml.safe_load((built["path"] / "bento.yaml").read_text())["envs"]
    }
    if built["image"] == "gpu":
        assert envs["NVIDIA_VISIBLE_DEVICES"] == "all" and envs["FACE_DEVICE"] == "cuda"
    else:
        assert envs["FACE_DEVICE"] == "cpu" and "NVIDIA_VISIBLE_DEVICES" not in envs
    assert envs["FACE_MODEL"] == DEFAULT_PACK


def test_bento_carries_source_but_no_tests_or_benchmarks(built):
    src = built["path"] / "src"
    files = {p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file()}
    assert {
        "service.py",
        "runners/insightface_runner.py",
        "face_api/pipeline/analysis.py",
        "face_api/inference/engine.py",
    } <= files
    assert not [f for f in files if f.startswith(("tests/", "benchmarks/")) or "__pycache__" in f]


def test_export_holds_the_pack_files_with_their_sha256(built, tmp_path):
    archive = tmp_path / "face-api.bento"
    subprocess.run(
        [str(ROOT / ".venv/bin/bentoml"), "export", built["tag"], str(archive)],
        env=built["env"],
        check=True,
        capture_output=True,
        timeout=300,
    )
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    found = {p.name: sha256_of(p) for p in (tmp_path / "x" / "models").rglob("*.onnx")}
    assert found == {p.name: sha256_of(p) for p in DEFAULT_PACK_DIR.glob("*.onnx")}


def test_serving_the_built_bento_answers_health_and_detect(built, tmp_path):
    # The GPU image's FACE_DEVICE=cuda would refuse this CPU-only machine: let it fall back.
    device = "auto" if built["image"] == "gpu" else "cpu"
    env = {**built["env"], "FACE_API_KEYS": "bento-key", "FACE_DEVICE": device}
    with start_server(tmp_path / "bento.log", env, target=built["tag"], cwd=tmp_path) as srv:
        assert httpx.get(f"{srv.url}/v1/health").json() == {"status": "ok"}
        response = httpx.post(
            f"{srv.url}/v1/detect",
            headers={"x-api-key": "bento-key"},
            json={"image": b64(IDENTITIES[0])},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        assert len(response.json()["faces"]) == 1
        server = httpx.get(f"{srv.url}/v1/info/server").json()
        assert server["device"] == "cpu" and server["package_conflicts"] == []
        info = httpx.get(f"{srv.url}/v1/info/model/{DEFAULT_PACK}").json()
        assert {f["name"] for f in info["files"]} == {
            p.name for p in DEFAULT_PACK_DIR.glob("*.onnx")
        }
