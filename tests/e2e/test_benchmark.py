"""The benchmark harnesses run end to end on a little data, so they cannot rot."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.paths import ROOT

pytestmark = pytest.mark.e2e
WORKLOADS = ("detect", "feature", "multi-embeddings", "embeddings-only")
MODES = ("baseline (FaceAnalysis)", "ours, in process", "served, sequential", "served, 8 clients")


def test_quick_benchmark_produces_every_row_without_errors(tmp_path):
    out = tmp_path / "bench.md"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--out", str(out)],
        cwd=ROOT,
        env={**os.environ, "BENTOML_HOME": str(tmp_path / "home")},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = out.read_text()
    rows = [line.split("|")[1:-1] for line in table.splitlines() if line.startswith("| ")]
    cells = [[c.strip() for c in row] for row in rows]
    measured = {(r[0], r[2]) for r in cells if r[0] in WORKLOADS}
    assert measured == {(w, m) for w in WORKLOADS for m in MODES}
    for row in cells:
        if row[0] in WORKLOADS:
            assert row[-1] == "0", f"errors in {row}"  # no failed request
            assert float(row[7]) > 0  # faces per second
    assert "`embed`:" in table and "`detect`:" in table  # batch sizes the runner formed
    assert "responses shed with 503 during the run: 0" in table


def test_gallery_benchmark_runs_and_finds_every_probe(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.galleries", "--sizes", "2000", "--probes", "10"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = [line for line in result.stdout.splitlines() if line.startswith("| 2,000 ")]
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert float(cells[1].replace(",", "")) > 0  # bulk enroll faces/s
    assert float(cells[3]) > 0 and float(cells[5]) > 0  # search and numpy medians
    assert cells[-1] == "1.00"  # rank-1 right for every probe, in Milvus and in numpy
