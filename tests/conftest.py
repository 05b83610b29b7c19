"""Session fixtures: a private BentoML home, the default pack imported on demand, a real server."""

from __future__ import annotations

import os
import tempfile

# Before anything imports bentoml: a throwaway home, and no telemetry.
os.environ.setdefault("BENTOML_HOME", tempfile.mkdtemp(prefix="face-api-bentoml-"))
os.environ["BENTOML_DO_NOT_TRACK"] = "True"

from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402

from tests.paths import DEFAULT_PACK, DEFAULT_PACK_DIR  # noqa: E402

# Every server the tests start serves the tests' pack, whatever the caller's FACE_MODEL.
os.environ["FACE_MODEL"] = DEFAULT_PACK

from tests.server import (  # noqa: E402
    API_KEY,
    METRICS_KEY,
    RunningServer,
    api_client,
    start_server,
)


def pytest_sessionstart(session: pytest.Session) -> None:
    """On a fresh clone, the tests' pack fetched into build/packs first, as serve.sh does: tests
    read its files from disk. (Importing it into the model store is `imported_pack`'s job.)"""
    if not DEFAULT_PACK_DIR.is_dir():
        from face_api.inference.packs import fetch_pack

        fetched = fetch_pack(DEFAULT_PACK, DEFAULT_PACK_DIR.parent.parent)
        assert fetched == DEFAULT_PACK_DIR, fetched


@pytest.fixture(scope="session")
def imported_pack() -> str:
    """The tests' pack in the session's model store, imported on first use. Needed by every real
    server, and by anything importing `service` or `runners.*` (they look the pack up at import);
    every test under tests/e2e gets it (tests/e2e/conftest.py)."""
    from face_api.inference.packs import PackNotInStoreError, get_pack, import_pack

    try:
        get_pack(DEFAULT_PACK)
    except PackNotInStoreError:
        import_pack(str(DEFAULT_PACK_DIR), DEFAULT_PACK)
    return DEFAULT_PACK


@pytest.fixture(scope="session")
def server(imported_pack: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A real `bentoml serve service:FaceAPI` on a free port, with real models."""
    log_dir = tmp_path_factory.mktemp("server")
    keys = {"FACE_API_KEYS": f"{API_KEY},second-key", "FACE_METRICS_KEYS": METRICS_KEY}
    with start_server(log_dir / "serve.log", keys) as srv:
        yield srv


@pytest.fixture(scope="session")
def api(server: RunningServer):
    with api_client(server.url) as client:
        yield client


@pytest.fixture(scope="session")
def bento_client(server: RunningServer):
    import bentoml

    with bentoml.SyncHTTPClient(server.url, server_ready_timeout=30, timeout=120) as client:
        client.client.headers.update({"x-api-key": API_KEY})
        yield client
