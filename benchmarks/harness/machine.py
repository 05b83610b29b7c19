"""What the machine and the runner did during a run: the GPU's utilisation, the batches the
runner formed, and a description of the machine for the report."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import threading
from pathlib import Path

import httpx

BATCH_METRIC = "face_runner_batch_rows"


class GpuSampler:
    """The GPU's utilisation sampled every 250 ms while in use (no-op without nvidia-smi)."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> GpuSampler:
        try:
            self._process = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
                + ["-lms", "250"],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
        except OSError:
            return self
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            first = line.split(",")[0].strip()
            if first.isdigit():
                self.samples.append(float(first))

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)

    @property
    def mean(self) -> float | None:
        return statistics.mean(self.samples) if self.samples else None


def batch_histogram(url: str, api_key: str) -> dict[str, dict[str, float]]:
    """Rows per forward pass the runner formed, from its ``face_runner_batch_rows`` histogram."""
    bearer = {"authorization": f"Bearer {api_key}"}  # /metrics needs a key, as Prometheus sends
    text = httpx.get(f"{url}/metrics", headers=bearer, timeout=30).text
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        if not line.startswith(BATCH_METRIC) or line.startswith(f"{BATCH_METRIC}_bucket"):
            continue
        name, value = line.rsplit(" ", 1)
        method = name.split('method="', 1)[1].split('"', 1)[0]
        key = name.split("{")[0].rsplit("_", 1)[1]  # sum or count
        entry = out.setdefault(method, {})
        entry[key] = entry.get(key, 0) + float(value)
    return out


def batches_between(before: dict, after: dict) -> str:
    parts = []
    for method, stats in sorted(after.items()):
        prior = before.get(method, {})
        count = stats.get("count", 0) - prior.get("count", 0)
        total = stats.get("sum", 0) - prior.get("sum", 0)
        if count:
            parts.append(f"{method} {total / count:.1f} x{int(count)}")
    return ", ".join(parts)


def machine_description(providers: list[str]) -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0))
    gpu = ""
    if "CUDAExecutionProvider" in providers:
        try:
            found = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout.strip()
            gpu = f", GPU {found}"
        except OSError:
            gpu = ", GPU (nvidia-smi not found)"
    return f"{cpu}, {cores} cores{gpu}; providers {providers}"
