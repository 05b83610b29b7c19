"""The README's serve command on a fresh clone, where no ../shared lies beside the checkout.

The checkout is copied alone into an empty folder and `./scripts/serve.sh` is run there as a
user would: it installs its own .venv from the lock file, fetches insightface's `buffalo_sc` (a
local mirror of the model-zoo release stands in for it: no network here), makes a demo key and
serves. The mirror's zip is laid out as insightface's: its two ONNX files at the top.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import time
import zipfile
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import b64
from tests.paths import DEFAULT_PACK_DIR, IDENTITIES, ROOT
from tests.server import free_port
from tests.unit.test_packs import serve_folder

pytestmark = pytest.mark.e2e


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
    folder.mkdir()
    with zipfile.ZipFile(folder / "buffalo_sc.zip", "w") as archive:
        archive.write(DEFAULT_PACK_DIR / "det_500m.onnx", "det_500m.onnx")
        archive.write(DEFAULT_PACK_DIR / "w600k_mbf_int8_dequant.onnx", "w600k_mbf.onnx")


def test_a_fresh_clone_serves_buffalo_sc_with_a_demo_key(tmp_path):
    clone = tmp_path / "alone" / "face-api"  # nothing beside it
    copy_checkout(clone)
    buffalo_sc_mirror(tmp_path / "mirror")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACE_", "BENTOML_HOME"))}
    env |= {"FACE_PORT": str(port), "BENTOML_DO_NOT_TRACK": "True"}
    log = tmp_path / "serve.log"
    url = f"http://127.0.0.1:{port}"
    with serve_folder(tmp_path / "mirror") as mirror, log.open("wb") as output:
        env["FACE_PACK_DOWNLOAD_URL"] = mirror
        process = subprocess.Popen(
            ["./scripts/serve.sh"],
            cwd=clone,
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
            key_file = clone / ".face-api-key"
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
