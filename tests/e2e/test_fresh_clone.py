"""The README's two commands on a fresh clone, where no ../shared lies beside the checkout.

The checkout is copied alone into an empty folder and the commands are run there as a user would:
`./scripts/serve.sh` installs its own .venv from the lock file, fetches insightface's `buffalo_sc`
(a local mirror of the model-zoo release stands in for it: no network here), makes a demo key and
serves; `./scripts/test.sh` fetches the same pack for the tests, collects every test and passes a
subset. The mirror's zip is laid out as insightface's: its two ONNX files at the top.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import stat
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from tests.helpers import b64, serve_folder
from tests.paths import DEFAULT_PACK_DIR, IDENTITIES, ROOT
from tests.server import free_port


def copy_checkout(target: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        source = ROOT / name.decode()
        if source.is_file():
            destination = target / name.decode()
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(source.read_bytes())
            destination.chmod(source.stat().st_mode)


def buffalo_sc_mirror(folder: Path) -> None:
    """buffalo_sc.zip with the tests' pack's detector and recognizer under buffalo_sc's names."""
    folder.mkdir()
    with zipfile.ZipFile(folder / "buffalo_sc.zip", "w") as archive:
        for onnx in DEFAULT_PACK_DIR.glob("*.onnx"):
            archive.write(
                onnx, "det_500m.onnx" if onnx.name.startswith("det_") else "w600k_mbf.onnx"
            )


@dataclass
class Clone:
    path: Path
    env: dict[str, str]  # a user's environment, FACE_PACK_DOWNLOAD_URL naming the mirror


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Iterator[Clone]:
    folder = tmp_path_factory.mktemp("fresh")
    path = folder / "alone" / "face-api"  # nothing beside it
    copy_checkout(path)
    buffalo_sc_mirror(folder / "mirror")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FACE_", "BENTOML_HOME", "PYTEST_", "VIRTUAL_ENV"))
    }
    env["BENTOML_DO_NOT_TRACK"] = "True"
    with serve_folder(folder / "mirror") as mirror:
        yield Clone(path=path, env={**env, "FACE_PACK_DOWNLOAD_URL": mirror})


def test_a_fresh_clone_serves_buffalo_sc_with_a_demo_key(clone, tmp_path):
    port = free_port()
    env = {**clone.env, "FACE_PORT": str(port)}
    log = tmp_path / "serve.log"
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as output:
        process = subprocess.Popen(
            ["./scripts/serve.sh"],
            cwd=clone.path,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 540
            while time.monotonic() < deadline:
                assert process.poll() is None, log.read_text()[-4000:]
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{url}/v1/health", timeout=5).status_code == 200:
                        break
                time.sleep(1)
            else:
                raise AssertionError(f"not serving:\n{log.read_text()[-4000:]}")
            printed = log.read_text()
            key_file = clone.path / ".face-api-key"
            key = key_file.read_text().strip()
            assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
            assert f"    export FACE_API_KEYS={key}" in printed
            assert "Installing the environment into .venv" in printed
            assert "Serving pack buffalo_sc on http://127.0.0.1" in printed
            assert httpx.get(f"{url}/v1/info/model").json()["model_name"] == "buffalo_sc"
            answer = httpx.post(
                f"{url}/v1/feature",
                json={"image": b64(IDENTITIES[0])},
                headers={"x-api-key": key},
                timeout=60,
            )
            assert answer.status_code == 200 and answer.json()["face_detect"]["processed"]
        finally:
            children: list[psutil.Process] = []
            with contextlib.suppress(psutil.NoSuchProcess):
                children = psutil.Process(process.pid).children(recursive=True)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=30)
            for child in children:
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()


# A subset of the suite, to keep CI's time: the unit tests, and detection and recognition end to
# end against a real server on the fetched pack.
SUBSET = ["tests/unit", "tests/e2e/test_detect.py", "tests/e2e/test_recognition.py"]


def test_a_fresh_clone_collects_every_test_and_passes_a_subset(clone):
    here = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    expected = collected_count(here.stdout)
    collected = subprocess.run(
        ["./scripts/test.sh", "--collect-only", "-q"],
        cwd=clone.path,
        env=clone.env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-3000:]
    assert collected_count(collected.stdout) == expected
    assert (clone.path / "build/packs/models/buffalo_sc/w600k_mbf.onnx").is_file()
    subset = subprocess.run(
        ["./scripts/test.sh", "-q", "-p", "no:cacheprovider", *SUBSET],
        cwd=clone.path,
        env=clone.env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    tail = subset.stdout[-4000:] + subset.stderr[-2000:]
    assert subset.returncode == 0, tail
    summary = subset.stdout.strip().splitlines()[-1]
    assert "failed" not in summary and "error" not in summary, summary
    skipped = re.findall(r"^SKIPPED \[\d+\] (.*)$", subset.stdout, flags=re.M)
    assert all("needs the workspace's pack" in reason for reason in skipped), skipped


def collected_count(output: str) -> int:
    match = re.search(r"^(\d+) tests? collected", output, flags=re.M)
    assert match, output[-2000:]
    return int(match.group(1))
