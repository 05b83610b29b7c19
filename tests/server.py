"""Starting and stopping a real `bentoml serve` for the end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.paths import ROOT

API_KEY = "test-key-0123456789"
METRICS_KEY = "metrics-key-9876543210"  # the session server's, for /metrics only


@dataclass
class RunningServer:
    url: str
    log_path: Path
    process: subprocess.Popen[bytes]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def logged(self, *markers: str, timeout_s: float = 30) -> str:
        """The log once every marker is in it: the server's processes write their lines a
        little after the answer goes out, so a test that asserts what the log lacks first waits
        for the lines of every request it sent."""
        deadline = time.monotonic() + timeout_s
        while True:
            text = self.log()
            missing = [m for m in markers if m not in text]
            if not missing:
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"not in the server log after {timeout_s} s: {missing}")
            time.sleep(0.1)


def api_client(url: str, timeout: float = 120) -> httpx.Client:
    """A keyed client for a long-lived fixture. It drops idle connections before the server's
    5 s keep-alive ends: one kept exactly as long can be reused just as the server closes it."""
    return httpx.Client(
        base_url=url,
        headers={"x-api-key": API_KEY},
        timeout=timeout,
        limits=httpx.Limits(keepalive_expiry=2.0),
    )


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port nothing holds now, for a server that binds it seconds later: below the kernel's
    ephemeral range, where port 0's would be, since an outgoing connection can take such a port
    meanwhile (a container on the host's network failed to bind so); and never one this process
    handed out before."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    candidates = list(range(10_000, low))
    random.shuffle(candidates)
    for port in candidates:
        if port in _HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("", port))  # every address: what a server on 0.0.0.0 needs
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    with socket.socket() as sock:  # a kernel whose ephemeral range starts low: its choice
        sock.bind(("", 0))
        return sock.getsockname()[1]


def launch(
    log_path: Path, env: dict[str, str], target: str = "service:FaceAPI", cwd: Path = ROOT
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    # Each server keeps its galleries beside its log unless the test says where.
    gallery_dir = str(log_path.parent / "galleries")
    full_env = {**os.environ, "FACE_DEVICE": "auto", "FACE_GALLERY_DIR": gallery_dir, **env}
    if "BENTOML_HOME" not in env:
        full_env["BENTOML_HOME"] = own_bentoml_home(log_path.parent)
    log = log_path.open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bentoml",
            "serve",
            target,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=cwd,
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return process, f"http://127.0.0.1:{port}"


def own_bentoml_home(folder: Path) -> str:
    """A BentoML home of the server's own that shares the session's model store.

    `bentoml serve` empties its home's Prometheus folder when it starts, so servers sharing a
    home lose each other's /metrics (counted calls vanished mid-session).
    """
    home = folder / "bentoml_home"
    if not home.exists():
        home.mkdir(parents=True)
        (home / "models").symlink_to(Path(os.environ["BENTOML_HOME"]) / "models")
    return str(home)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def wait_healthy(
    process: subprocess.Popen[bytes], url: str, log_path: Path, timeout: float = 120
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"server exited ({process.returncode}):\n{log_path.read_text()[-4000:]}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/v1/health", timeout=5).status_code == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"server not healthy in {timeout}s:\n{log_path.read_text()[-4000:]}")


@contextlib.contextmanager
def start_server(log_path: Path, env: dict[str, str], **kwargs) -> Iterator[RunningServer]:
    process, url = launch(log_path, env, **kwargs)
    try:
        wait_healthy(process, url, log_path)
        yield RunningServer(url=url, log_path=log_path, process=process)
    finally:
        stop(process)


def run_until_exit(log_path: Path, env: dict[str, str], timeout: float = 90) -> tuple[int, str]:
    """Start a server expected to refuse to start; return its exit code and log."""
    process, url = launch(log_path, env)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(process)
        return -1, log_path.read_text(errors="replace")
    finally:
        stop(process)
    return process.returncode, log_path.read_text(errors="replace")


def service_processes(server: RunningServer) -> dict[str, list]:
    """The server's processes by role: ``arbiter`` (the `bentoml serve` process) and each
    worker's service name (``FaceAPI``, ``InsightFaceRunner``)."""
    import psutil

    arbiter = psutil.Process(server.process.pid)
    roles: dict[str, list] = {"arbiter": [arbiter]}
    for child in arbiter.children(recursive=True):
        try:
            cmdline = child.cmdline()
        except psutil.NoSuchProcess:
            continue
        if "--service-name" in cmdline:
            name = cmdline[cmdline.index("--service-name") + 1]
            roles.setdefault(name, []).append(child)
    return roles


def rss_bytes(server: RunningServer) -> dict[str, int]:
    """Resident memory of every process of the server, by role (summed over its workers and the
    processes they started, the runner's decode processes)."""
    import psutil

    totals: dict[str, int] = {}
    for role in service_processes(server):
        for process in role_processes(server, role):
            try:
                totals[role] = totals.get(role, 0) + process.memory_info().rss
            except psutil.NoSuchProcess:
                continue
    return totals


def reset_peak_rss(server: RunningServer) -> None:
    """Start every process's peak resident memory (``VmHWM``) again from its current size."""
    for role in service_processes(server):
        for process in role_processes(server, role):
            with contextlib.suppress(OSError):
                Path(f"/proc/{process.pid}/clear_refs").write_text("5")


def peak_rss_bytes(server: RunningServer) -> dict[str, int]:
    """Each role's peak resident memory since ``reset_peak_rss`` (summed over its workers and
    the processes they started, the runner's decode processes)."""
    peaks: dict[str, int] = {}
    for role in service_processes(server):
        for process in role_processes(server, role):
            with contextlib.suppress(OSError):
                status = Path(f"/proc/{process.pid}/status").read_text()
                kilobytes = int(status.split("VmHWM:")[1].split()[0])
                peaks[role] = peaks.get(role, 0) + kilobytes * 1024
    return peaks


def role_processes(server: RunningServer, role: str) -> list:
    """A role's worker processes and everything they started (the runner's decode processes)."""
    processes = list(service_processes(server).get(role, []))
    if role == "arbiter":  # its children are the other roles
        return processes
    for process in list(processes):
        with contextlib.suppress(Exception):
            processes.extend(process.children(recursive=True))
    return processes


def cpu_seconds(server: RunningServer, role: str) -> float:
    """CPU time (user and system) spent so far by a role's processes and their children."""
    import psutil

    total = 0.0
    for process in role_processes(server, role):
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system
    return total
