"""Start-up: refusing to start with a message naming the cause, device fallback, auth off."""

from __future__ import annotations

import httpx

from tests.helpers import b64
from tests.paths import IDENTITIES
from tests.server import run_until_exit, start_server


def test_no_api_key_refuses_to_start(tmp_path, imported_pack):
    code, log = run_until_exit(tmp_path / "serve.log", {"FACE_API_KEYS": "", "FACE_API_AUTH": "on"})
    assert code != -1, "server kept running without any API key"
    assert "no API key configured" in log and "FACE_API_AUTH=off" in log


def test_cuda_required_without_cuda_refuses_to_start(tmp_path, imported_pack):
    code, log = run_until_exit(
        tmp_path / "serve.log", {"FACE_API_KEYS": "k", "FACE_DEVICE": "cuda"}
    )
    assert code != -1, "server kept running on CPU although CUDA was required"
    assert "FACE_DEVICE=cuda" in log and "CUDAExecutionProvider" in log


def test_missing_pack_refuses_to_start_and_says_how_to_import(tmp_path, imported_pack):
    code, log = run_until_exit(
        tmp_path / "serve.log", {"FACE_API_KEYS": "k", "FACE_MODEL": "not_imported"}
    )
    assert code not in (0, -1)
    assert "not_imported" in log and "python -m face_api.inference.packs import" in log


def test_a_second_server_on_the_same_gallery_folder_refuses_to_start(tmp_path, imported_pack):
    """Two `./scripts/serve.sh` from one checkout share its ./galleries: the second one must say
    so at start, not answer 503 on its first gallery call. The first one keeps serving."""
    env = {"FACE_API_KEYS": "k", "FACE_GALLERY_DIR": str(tmp_path / "galleries")}
    (tmp_path / "second").mkdir()  # its own BentoML home and log, the same galleries
    with start_server(tmp_path / "first.log", env) as first:
        code, log = run_until_exit(tmp_path / "second" / "serve.log", env)
        assert code != -1, "the second server kept running on the first one's galleries"
        assert "refusing to start" in log and "FACE_GALLERY_DIR" in log
        assert "used by another running server" in log
        listed = httpx.get(f"{first.url}/v1/galleries", headers={"x-api-key": "k"}, timeout=60)
        assert listed.status_code == 200, listed.text


def test_auto_falls_back_to_cpu_loudly_and_logs_the_providers_in_use(server):
    log = server.log()
    assert "FACE_DEVICE=auto: falling back to CPU" in log
    assert "providers in use ['CPUExecutionProvider', 'OpenVINO CPU (f32)']" in log


def test_auth_off_is_loud_and_serves_this_machine_only(tmp_path, imported_pack):
    """No warning had been given, and a page of another site, under a name of its own pointed
    at this machine (DNS rebinding), enrolled a face with a text/plain POST."""
    with start_server(tmp_path / "off.log", {"FACE_API_AUTH": "off", "FACE_API_KEYS": ""}) as srv:
        response = httpx.post(
            f"{srv.url}/v1/feature", json={"image": b64(IDENTITIES[0])}, timeout=60
        )
        assert response.status_code == 200 and response.json()["feature"]
        assert "!!! API key checks are off (FACE_API_AUTH=off)" in srv.log()
        health = httpx.get(f"{srv.url}/v1/health", timeout=30).json()
        assert health["status"] == "ok" and "FACE_API_AUTH=off" in health["warnings"][0]
        enroll = '{"subject": "x", "feature": "AACAPwAAgD8="}'
        rebound = httpx.post(
            f"{srv.url}/v1/galleries/g/faces",
            content=enroll,
            headers={"host": "attacker.example:3000", "content-type": "text/plain"},
        )
        assert rebound.status_code == 403, rebound.text
        cross_site = httpx.post(
            f"{srv.url}/v1/file/galleries/g/faces",
            files={"image": ("a.jpg", IDENTITIES[0].read_bytes())},
            data={"subject": "x"},
            headers={"origin": "https://attacker.example", "sec-fetch-site": "cross-site"},
        )
        assert cross_site.status_code == 403, cross_site.text
        plain = httpx.post(
            f"{srv.url}/v1/galleries/g/faces",
            content=enroll,
            headers={"content-type": "text/plain"},
        )
        assert plain.status_code == 422, plain.text  # what a browser sends without asking
        assert httpx.get(f"{srv.url}/v1/galleries", timeout=30).json() == {"galleries": []}

    secret = "never-log-this-key-7f3a9"
    with start_server(tmp_path / "keys.log", {"FACE_API_KEYS": secret}) as srv:
        for key in (secret, "wrong-" + secret, secret[:10]):
            httpx.post(
                f"{srv.url}/v1/detect",
                headers={"x-api-key": key},
                json={"image": b64(IDENTITIES[0])},
                timeout=60,
            )
        log = srv.log()
    assert "POST" in log or "/v1/detect" in log
    assert secret not in log and secret[:10] not in log


def test_killing_the_main_process_takes_its_workers_along(tmp_path, imported_pack):
    """SIGKILL to `bentoml serve` leaves no worker behind holding the port."""
    import contextlib
    import os
    import signal
    import socket
    import time

    import psutil

    from tests.server import RunningServer, launch, service_processes, wait_healthy

    log = tmp_path / "serve.log"
    process, url = launch(log, {"FACE_API_KEYS": "k"})
    workers: list[psutil.Process] = []
    try:
        wait_healthy(process, url, log)
        roles = service_processes(RunningServer(url, log, process))
        workers = [p for role, ps in roles.items() if role != "arbiter" for p in ps]
        assert {"FaceAPI", "InsightFaceRunner", "GalleryStoreService"} <= set(roles)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        port = int(url.rsplit(":", 1)[1])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            alive = [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]
            with socket.socket() as probe:
                listening = probe.connect_ex(("127.0.0.1", port)) == 0
            if not alive and not listening:
                break
            time.sleep(0.2)
        assert not listening, "the port still answers after the main process died"
        assert not alive, [w.cmdline()[-8:] for w in alive]
    finally:
        for worker in workers:
            with contextlib.suppress(psutil.NoSuchProcess):
                worker.kill()
