"""Which of the project's files and functions one ``/v1/feature`` request runs through.

    .venv/bin/python -m benchmarks.probes.request_path [ROOT]

Starts a real server from ROOT (default: this checkout; another checkout gives its numbers, for a
before and after), with a profiler in each of its processes (``request_path_site``), warms it up,
then records one request: every project function called in the API worker and the runner, across
their threads. docs/architecture.md, "How it works", reports the counts.
"""

from __future__ import annotations

import base64
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else HERE.parent.parent).resolve()
    sys.path.insert(0, str(root))
    import tests.conftest  # noqa: F401 - BentoML's home, the tests' pack name
    from face_api.inference.packs import PackNotInStoreError, get_pack, import_pack
    from tests.paths import DEFAULT_PACK, DEFAULT_PACK_DIR, IDENTITIES
    from tests.server import API_KEY, start_server

    try:
        get_pack(DEFAULT_PACK)
    except PackNotInStoreError:
        import_pack(str(DEFAULT_PACK_DIR), DEFAULT_PACK)
    folder = Path(tempfile.mkdtemp(prefix="request-path-"))
    env = {
        "FACE_API_KEYS": API_KEY,
        "REQUEST_PATH_ROOT": str(root),
        "REQUEST_PATH_DIR": str(folder),
        "PYTHONPATH": str(HERE / "request_path_site"),
    }
    body = {"image": base64.b64encode(IDENTITIES[0].read_bytes()).decode()}
    with start_server(folder / "serve.log", env, cwd=root) as server:
        client = httpx.Client(base_url=server.url, headers={"x-api-key": API_KEY}, timeout=120)
        for _ in range(3):  # first calls: caches filled, nothing left to start
            client.post("/v1/feature", json=body).raise_for_status()
        (folder / "start").touch()
        time.sleep(1.0)
        client.post("/v1/feature", json=body).raise_for_status()
        time.sleep(0.5)
        (folder / "stop").touch()
        time.sleep(1.5)
    called: dict[str, set[str]] = {}
    for dump in folder.glob("*.json"):
        for path, function in json.loads(dump.read_text()):
            called.setdefault(path, set()).add(function)
    for path in sorted(called):
        print(f"{path}: {', '.join(sorted(called[path]))}")
    functions = sum(len(f) for f in called.values())
    print(f"{len(called)} files, {functions} functions")


if __name__ == "__main__":
    main()
