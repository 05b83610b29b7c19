"""Timed passes: one mode's latencies and faces, and modes taking turns pass by pass."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from benchmarks.harness.cpu import CpuMeter


@dataclass
class Measure:
    workload: str
    mode: str
    latencies: list[float] = field(default_factory=list)  # seconds per request
    faces: int = 0
    wall: float = 0.0  # seconds for the whole pass
    errors: int = 0
    gpu_util: float | None = None  # mean %, during served passes on a GPU
    batches: str = ""  # mean rows per pass the runner formed, during this pass
    cpu_s: float | None = None  # CPU seconds the measured side used (a server: every process)

    def percentile_ms(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]

    @property
    def requests_per_s(self) -> float:
        return len(self.latencies) / self.wall if self.wall else 0.0

    @property
    def faces_per_s(self) -> float:
        return self.faces / self.wall if self.wall else 0.0

    @property
    def cpu_ms_per_request(self) -> float | None:
        if self.cpu_s is None or not self.latencies:
            return None
        return 1000 * self.cpu_s / len(self.latencies)


def alternating(
    workload: str,
    calls: dict[str, Callable[[object], int]],
    items: list,
    repeats: int,
    cpu: dict[str, CpuMeter] | None = None,
) -> list[Measure]:
    """Passes over the items, the modes taking turns pass by pass, so the machine's drift (this
    one is shared) spreads over every mode while each pass runs warm; a mode's wall time is
    the sum of its own calls, its CPU what its meter (``cpu``) counted over its passes."""
    measures = {mode: Measure(workload, mode) for mode in calls}
    meters = cpu or {}
    for _ in range(repeats):
        for mode, call in calls.items():
            meter = meters.get(mode)
            cpu_before = meter.seconds() if meter else 0.0
            for item in items:
                t0 = time.perf_counter()
                measures[mode].faces += call(item)
                measures[mode].latencies.append(time.perf_counter() - t0)
            if meter:
                used = meter.seconds() - cpu_before
                measures[mode].cpu_s = (measures[mode].cpu_s or 0.0) + used
    for measure in measures.values():
        measure.wall = sum(measure.latencies)
    return list(measures.values())
