"""The benchmark harnesses run end to end on a little data, so they cannot rot."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.paths import ROOT

pytestmark = pytest.mark.e2e
WORKLOADS = ("detect", "feature", "multi-embeddings", "embeddings-only")
MODES = ("baseline (FaceAnalysis)", "ours, in process", "served, 1 client", "served, 8 clients")


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
    main_rows = [r for r in cells if r[0] in WORKLOADS and len(r) > 2]
    measured = {(r[0], r[2]) for r in main_rows}
    assert measured == {(w, m) for w in WORKLOADS for m in MODES}
    for row in main_rows:
        assert row[9] == "0", f"errors in {row}"  # no failed request
        assert float(row[5]) > 0  # faces per second
        if row[2].startswith("served") and row[0] != "embeddings-only":
            assert "detect " in row[11] and "x" in row[11], row  # the passes formed
    stages = {r[0]: r[1] for r in cells if len(r) == 2 and r[0] != "stage"}
    for stage in ("parse", "base64", "hop", "decode", "detect", "align", "embed", "response"):
        assert float(stages[stage]) >= 0, stages
    assert float(stages["server total (first byte in to answer out)"]) > float(stages["detect"])
    assert "Responses shed with 503 during the run: 0" in table
    assert "sends the runner for one `/v1/feature` request" in table


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
