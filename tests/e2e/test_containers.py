"""Both container images, built with the commands of docs/containers.md and run in a real Docker
daemon.

The daemon comes from ``scripts/start-docker.sh`` when none answers (started without a bridge
network, so every container shares the host's network and all traffic stays on 127.0.0.1), and the
base image from ``scripts/build-base-image.sh`` when Docker Hub cannot be reached. Without a daemon
and without root the module skips, except under CI, where that is a failure.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import re
import shlex
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import httpx
import insightface
import pytest

from tests.helpers import b64
from tests.kubernetes import CPU_VALUES, docker_run_args, render, the
from tests.paths import CROWD, DEFAULT_PACK, IDENTITIES, ROOT, identity_of
from tests.server import API_KEY, free_port

CONTAINERS_DOCS = (ROOT / "docs" / "containers.md").read_text()
BASE_IMAGE = "python:3.11-slim-bookworm"
HEALTHY_WITHIN_S = 240
STOP_GRACE_S = 10  # Docker's default


def documented_commands(image: str) -> list[str]:
    """docs/containers.md's build, containerize and run lines for one image
    (``face-api-cpu:latest``)."""
    for block in re.findall(r"```bash\n(.*?)```", CONTAINERS_DOCS, flags=re.DOTALL):
        lines = block.strip().splitlines()
        if any(f"containerize {image} " in line for line in lines):
            return lines
    raise AssertionError(f"docs/containers.md has no commands for {image}")


def docker_client() -> str:
    """Debian's client, once scripts/start-docker.sh installed it (it builds with BuildKit alone;
    a newer client on PATH refuses BuildKit without the buildx plugin). Looked up when used: on a
    fresh machine it appears only when the daemon fixture installs it."""
    return "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [docker_client(), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def daemon() -> Iterator[None]:
    started = subprocess.run(
        [str(ROOT / "scripts/start-docker.sh")], capture_output=True, text=True, timeout=600
    )
    if started.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"no Docker daemon: {started.stderr[-2000:]}")
        pytest.skip(f"no Docker daemon (scripts/start-docker.sh: {started.stderr.strip()})")
    pid = started.stdout.strip()
    try:
        yield
    finally:
        if pid:  # the daemon this module started; leave nothing holding a port
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), 15)
            for _ in range(60):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.5)


@pytest.fixture(scope="module")
def base_image(daemon) -> str:
    if docker("image", "inspect", BASE_IMAGE, check=False).returncode == 0:
        return BASE_IMAGE
    if docker("pull", BASE_IMAGE, check=False, timeout=300).returncode == 0:
        return BASE_IMAGE
    command = [str(ROOT / "scripts/build-base-image.sh")]
    if list(Path("/usr/local/share/ca-certificates").glob("*.crt")):
        command.append("--host-cas")  # this machine reaches the package index through a proxy
    subprocess.run(
        command, env={**os.environ, "DOCKER": docker_client()}, check=True, timeout=900, cwd=ROOT
    )
    return BASE_IMAGE


@dataclass
class Image:
    tag: str
    run_line: str  # docs/containers.md's `docker run` line for it


def build(image: str, home: Path) -> Image:
    """docs/containers.md's lines, as written; only the build gets the host's network (this daemon
    has no bridge)."""
    build_line, containerize_line, run_line = documented_commands(image)
    env = {
        **os.environ,
        "BENTOML_HOME": str(home),
        "FACE_MODEL": DEFAULT_PACK,
        "PATH": f"{Path(docker_client()).parent}:{os.environ['PATH']}",
        "DOCKER_BUILDKIT": "1",
    }
    for line in (build_line, f"{containerize_line} --opt network=host"):
        result = subprocess.run(
            line, shell=True, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500
        )
        assert result.returncode == 0, f"{line}\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    tag = shlex.split(containerize_line)[shlex.split(containerize_line).index("-t") + 1]
    return Image(tag=tag, run_line=run_line)


@pytest.fixture(scope="module")
def cpu_image(base_image, tmp_path_factory) -> Image:
    return build("face-api-cpu:latest", tmp_path_factory.mktemp("bentoml-home-cpu"))


@pytest.fixture(scope="module")
def gpu_image(base_image, tmp_path_factory) -> Image:
    return build("face-api:latest", tmp_path_factory.mktemp("bentoml-home-gpu"))


@dataclass
class Container:
    name: str
    url: str

    def logs(self) -> str:
        result = docker("logs", self.name, check=False)
        return result.stdout + result.stderr

    def state(self) -> dict:
        return json.loads(docker("inspect", "-f", "{{json .State}}", self.name).stdout)


def run_args(image: Image, name: str, port: int, volume: str, env: dict[str, str]) -> list[str]:
    """docs/containers.md's `docker run` line for this daemon: detached and named, on the host's
    network at its own port, with the test's volume and no GPU."""
    args = shlex.split(image.run_line)[2:]  # after `docker run`
    out = ["-d", "--name", name, "--network", "host", "-e", f"BENTOML_PORT={port}"]
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--rm":
            i += 1
        elif arg in ("-p", "--gpus"):
            i += 2
        elif arg == "-v":
            out += ["-v", f"{volume}:{args[i + 1].split(':', 1)[1]}"]
            i += 2
        elif arg == "-e" and args[i + 1].startswith("FACE_API_KEYS="):
            out += ["-e", f"FACE_API_KEYS={API_KEY}"]
            i += 2
        else:
            out.append(arg)
            i += 1
    for key, value in env.items():
        out[-1:-1] = ["-e", f"{key}={value}"]  # before the image, the last argument
    assert out[-1] == image.tag, image.run_line
    return out


@contextlib.contextmanager
def container(
    image: Image, volume: str = "", env: dict[str, str] | None = None
) -> Iterator[Container]:
    name = f"face-api-test-{os.getpid()}-{free_port()}"
    port = free_port()
    volume = volume or f"{name}-data"
    docker("run", *run_args(image, name, port, volume, env or {}))
    try:
        yield Container(name=name, url=f"http://127.0.0.1:{port}")
    finally:
        docker("rm", "-f", name, check=False)
        if volume.startswith(name):
            docker("volume", "rm", volume, check=False)


def wait_healthy(box: Container) -> float:
    start = time.monotonic()
    while time.monotonic() - start < HEALTHY_WITHIN_S:
        if not box.state()["Running"]:
            raise AssertionError(f"container exited:\n{box.logs()[-4000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{box.url}/v1/health", timeout=5).status_code == 200:
                return time.monotonic() - start
        time.sleep(1)
    raise AssertionError(f"not healthy in {HEALTHY_WITHIN_S} s:\n{box.logs()[-4000:]}")


def t1_jpeg() -> bytes:
    ok, data = cv2.imencode(".jpg", insightface.data.get_image("t1"))
    assert ok
    return data.tobytes()


def post_file(
    box: Container, path: str, data: dict[str, str] | None = None, **photos: bytes
) -> httpx.Response:
    files = {field: (f"{field}.jpg", jpeg, "image/jpeg") for field, jpeg in photos.items()}
    return httpx.post(
        f"{box.url}{path}", headers={"x-api-key": API_KEY}, files=files, data=data, timeout=60
    )


def packages(image: Image) -> set[str]:
    code = (
        "import importlib.metadata as m, json; "
        "print(json.dumps([d.metadata['Name'].lower() for d in m.distributions()]))"
    )
    result = docker(
        "run", "--rm", "--network", "host", "--entrypoint", "python", image.tag, "-c", code
    )
    return set(json.loads(result.stdout))


RUNTIMES = {"onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino"}
OPENCVS = {"opencv-python", "opencv-python-headless", "opencv-contrib-python"}


@pytest.mark.parametrize(
    ("fixture", "runtime"), [("cpu_image", "onnxruntime"), ("gpu_image", "onnxruntime-gpu")]
)
def test_each_image_has_one_onnxruntime_and_only_headless_opencv(request, fixture, runtime):
    installed = packages(request.getfixturevalue(fixture))
    assert installed & RUNTIMES == {runtime}
    assert installed & OPENCVS == {"opencv-python-headless"}


def test_cpu_image_serves_as_its_own_user(cpu_image):
    assert docker("inspect", "-f", "{{.Config.User}}", cpu_image.tag).stdout.strip() == "bentoml"
    with container(cpu_image) as box:
        took = wait_healthy(box)
        assert took < HEALTHY_WITHIN_S
        uid = docker("exec", box.name, "id", "-u").stdout.strip()
        assert uid != "0"
        detected = post_file(box, "/v1/file/detect", image=t1_jpeg())
        assert detected.status_code == 200, detected.text
        assert len(detected.json()["faces"]) == 6
        server = httpx.get(f"{box.url}/v1/info/server").json()
        assert server["device"] == "cpu" and server["package_conflicts"] == []
        a, b = [p for p in IDENTITIES if identity_of(p) == identity_of(IDENTITIES[0])][:2]
        stranger = next(p for p in IDENTITIES if identity_of(p) != identity_of(a))
        same = post_file(box, "/v1/file/score", image1=a.read_bytes(), image2=b.read_bytes())
        other = post_file(
            box, "/v1/file/score", image1=a.read_bytes(), image2=stranger.read_bytes()
        )
        assert same.status_code == other.status_code == 200
        assert same.json()["score"] > other.json()["score"] + 0.2


def test_docker_stop_answers_requests_in_flight_then_exits_in_its_grace_period(cpu_image):
    """Requests sent before `docker stop` are answered (200) or refused cleanly (503 in the
    contract's shape), never dropped; the container is gone before Docker would SIGKILL it."""
    body = {"image": b64(CROWD[-1]), "maxResults": 1000}  # 161 faces: about 1 s on 2 cores
    with container(cpu_image) as box:
        wait_healthy(box)
        stopping = threading.Event()
        outcomes: list[tuple[float, object]] = []

        def client() -> None:
            while not stopping.is_set():
                sent = time.monotonic()
                try:
                    response = httpx.post(
                        f"{box.url}/v1/multi-embeddings",
                        headers={"x-api-key": API_KEY},
                        json=body,
                        timeout=60,
                    )
                    outcome: object = (response.status_code, response.json())
                except httpx.HTTPError as exc:
                    outcome = exc
                outcomes.append((sent, outcome))

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(client) for _ in range(4)]
            time.sleep(3)
            stop_at = time.monotonic()
            stopping.set()
            stopped = docker("stop", "-t", str(STOP_GRACE_S), box.name, timeout=60)
            took = time.monotonic() - stop_at
            for future in futures:
                future.result(timeout=90)
        assert stopped.returncode == 0
        state = box.state()
        assert not state["Running"]
        assert took < STOP_GRACE_S, f"docker stop took {took:.1f} s: the server ignored SIGTERM"
        assert state["ExitCode"] != 137, "killed at the end of the grace period"
        # A request counts as in flight when it was sent well before the stop (the server has
        # read it by then); later ones may find the port closed, which is a refusal, not a loss.
        in_flight = [outcome for sent, outcome in outcomes if sent < stop_at - 0.5]
        assert in_flight, "no request was in flight"
        for outcome in in_flight:
            assert isinstance(outcome, tuple), f"a request in flight was dropped: {outcome!r}"
            status, body = outcome
            assert status in (200, 503), (status, body)
            if status == 503:
                assert isinstance(body["detail"], str) and body["detail"], body


def test_a_new_container_on_the_same_volume_finds_the_enrolled_face(cpu_image):
    volume = f"face-api-test-galleries-{os.getpid()}"
    docker("volume", "create", volume)
    enrolled, probe = IDENTITIES[0], IDENTITIES[1]
    assert identity_of(enrolled) == identity_of(probe)
    try:
        with container(cpu_image, volume=volume) as first:
            wait_healthy(first)
            answer = post_file(
                first,
                "/v1/file/galleries/people/faces",
                data={"subject": identity_of(enrolled)},
                image=enrolled.read_bytes(),
            )
            assert answer.status_code == 200, answer.text
            face_id = answer.json()["faces"][0]["faceId"]
            # The volume's folder and files: the service's user's only (biometric templates).
            modes = docker("exec", first.name, "find", "/data", "-printf", "%m %p\\n").stdout
            entries = [line.split(" ", 1) for line in modes.splitlines()]
            assert ["700", "/data"] in entries and ["600", "/data/galleries.db"] in entries
            assert all(mode[1:] == "00" for mode, _ in entries), modes
        # docs/galleries.md's export, in the image, on the volume the stopped container left.
        [line] = [x for x in GALLERIES_DOCS_LINES if "face_api.galleries export --all /data/" in x]
        args = shlex.split(line.removeprefix("$ "))[2:]  # after `docker run`
        args[args.index("face-galleries:/data")] = f"{volume}:/data"
        assert args[args.index("-w") + 2] == cpu_image.tag, line
        exported = docker("run", *args, timeout=300)
        assert "exported people: 1 faces to /data/moving/people.faces.jsonl.gz" in exported.stdout
        with container(cpu_image, volume=volume) as second:
            wait_healthy(second)
            found = post_file(second, "/v1/file/galleries/people/search", image=probe.read_bytes())
            assert found.status_code == 200, found.text
            best = found.json()["results"][0]["matches"][0]
            assert best["faceId"] == face_id and best["subject"] == identity_of(enrolled)
    finally:
        docker("volume", "rm", volume, check=False)


GALLERIES_DOCS_LINES = (ROOT / "docs" / "galleries.md").read_text().splitlines()
MISSING_LIBRARY = re.compile(r"([\w.+-]+\.so(?:\.\d+)*): cannot open shared object file")


def test_gpu_image_without_a_gpu_exits_naming_only_the_driver(gpu_image):
    with container(gpu_image) as box:
        start = time.monotonic()
        while box.state()["Running"]:
            assert time.monotonic() - start < 60, f"still running after 60 s:\n{box.logs()[-3000:]}"
            time.sleep(1)
        log = box.logs()
    assert "refusing to start: FACE_DEVICE=cuda" in log, log[-3000:]
    assert set(MISSING_LIBRARY.findall(log)) == {"libcuda.so.1"}, log[-3000:]


def test_gpu_image_serves_on_cpu_when_told(gpu_image):
    with container(gpu_image, env={"FACE_DEVICE": "cpu"}) as box:
        wait_healthy(box)
        detected = post_file(box, "/v1/file/detect", image=t1_jpeg())
        assert detected.status_code == 200, detected.text
        assert len(detected.json()["faces"]) == 6
        server = httpx.get(f"{box.url}/v1/info/server").json()
        assert server["device"] == "cpu" and server["providers"] == ["CPUExecutionProvider"]
        assert server["package_conflicts"] == []


def test_cpu_image_serves_under_the_charts_pod_spec(cpu_image, tmp_path):
    """The CPU image as the Helm chart runs it (tests/kubernetes.py): its numeric user, a read-only
    root filesystem, no capabilities or new privileges, the chart's environment and memory limit,
    its emptyDirs as tmpfs, the galleries' claim as a volume and the API and metrics keys as
    Secrets' files.
    Milvus Lite and BentoML then write only where the chart lets them; SIGTERM ends it cleanly
    well within the chart's grace period."""
    objects = render(CPU_VALUES, {"metricsKeys": {"secretName": "face-api-metrics"}})
    name, port = f"face-api-test-chart-{os.getpid()}", free_port()
    metrics_key = "metrics-only-key-0123"
    secrets = {
        "face-api-keys": {"api-keys": f"{API_KEY}\n"},
        "face-api-metrics": {"metrics-keys": f"{metrics_key}\n"},
    }
    args = docker_run_args(objects, cpu_image.tag, name, port, tmp_path, secrets)
    docker("run", *args)
    box = Container(name=name, url=f"http://127.0.0.1:{port}")
    try:
        wait_healthy(box)
        for path in ("/readyz", "/livez"):
            assert httpx.get(f"{box.url}{path}").status_code == 200, path
        assert len(post_file(box, "/v1/file/detect", image=t1_jpeg()).json()["faces"]) == 6
        photo, probe = IDENTITIES[0], IDENTITIES[1]
        data = {"subject": identity_of(photo)}
        enrolled = post_file(box, "/v1/file/galleries/g/faces", data=data, image=photo.read_bytes())
        assert enrolled.status_code == 200, enrolled.text
        found = post_file(box, "/v1/file/galleries/g/search", image=probe.read_bytes())
        assert found.json()["results"][0]["matches"][0]["subject"] == identity_of(photo)
        prometheus = {"Authorization": f"Bearer {metrics_key}"}
        metrics = httpx.get(f"{box.url}/metrics", headers=prometheus)
        assert metrics.status_code == 200 and "bentoml_" in metrics.text
        assert httpx.get(f"{box.url}/metrics").status_code == 401
        assert post_file(box, "/v1/file/detect", image=t1_jpeg()).status_code == 200
        refused = httpx.post(f"{box.url}/v1/file/detect", headers=prometheus, files={"image": b""})
        assert refused.status_code == 401  # a metrics key opens /metrics only
        pod = the(objects, "Deployment")["spec"]["template"]["spec"]
        grace = pod["terminationGracePeriodSeconds"]
        stop_at = time.monotonic()
        docker("stop", "-t", str(grace), name, timeout=grace + 30)
        assert time.monotonic() - stop_at < STOP_GRACE_S
        assert box.state()["ExitCode"] != 137, box.logs()[-3000:]
    finally:
        docker("rm", "-f", name, check=False)
        for volume in [a.split(":")[0] for a in args if a.startswith(f"{name}-")]:
            docker("volume", "rm", volume, check=False)
