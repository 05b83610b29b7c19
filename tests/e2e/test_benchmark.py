"""The benchmark harnesses run end to end on a little data, so they cannot rot."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.paths import ROOT

WORKLOADS = ("detect", "feature", "multi-embeddings", "embeddings-only")
MODES = ("baseline (FaceAnalysis)", "ours, in process", "served, 1 client", "served, 8 clients")


def probe(module: str, *args: str, timeout: float = 300) -> str:
    """A benchmark probe run as its README says; its printed tables."""
    result = subprocess.run(
        [sys.executable, "-m", f"benchmarks.probes.{module}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


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
        assert row[11] == "0", f"errors in {row}"  # no failed request
        assert float(row[5]) > 0  # faces per second
        assert float(row[9]) > 0, row  # CPU ms per request, for every row
        if row[2].startswith("served") and row[0] != "embeddings-only":
            assert "detect " in row[13] and "x" in row[13], row  # the passes formed
    stages = {r[0]: r[1] for r in cells if len(r) == 2 and r[0] != "stage"}
    total = float(stages["server total (first byte in to answer out)"])
    for stage in ("parse", "base64", "hop", "decode", "detect", "align", "embed", "response"):
        assert 0 < float(stages[stage]) < total, stages  # did work, within the whole
    assert "Responses shed with 503 during the run: 0" in table


def test_hop_probe_finds_the_encoded_image_far_smaller_than_a_canvas():
    output = probe("hop_bytes", timeout=120)
    ratio = output.rsplit("(", 1)[1].split("x more")[0]
    assert "sends the runner for one `/v1/feature` request" in output
    assert float(ratio) > 10, output


def test_gallery_benchmark_runs_every_store_and_finds_every_probe():
    output = probe("galleries", "--sizes", "2000", "--probes", "10", timeout=600)
    rows = [line for line in output.splitlines() if line.startswith("| 2,000 ")]
    cells = [[c.strip() for c in row.split("|")[1:-1]] for row in rows]
    stores = [
        "Milvus Lite",
        "Milvus server, writes wait, Bounded reads (the service)",
        "Milvus server, Strong reads (before issue 35)",
        "Milvus server, Strong reads, 50 ms time tick",
        "Milvus server, Session (not used)",
    ]
    assert [c[1] for c in cells] == stores
    for row in cells:
        assert float(row[2].replace(",", "")) > 0  # bulk enroll faces/s
        assert all(float(row[i]) > 0 for i in (4, 6, 7, 8))  # search, verify, delete, numpy
        assert row[10] == "1.00", row  # rank-1 over every probe
        assert all(float(row[i].replace(",", "")) > 0 for i in (11, 12, 13))  # export, import


def test_verify_probe_compares_the_rules_on_every_identity_pair():
    output = probe("verify_scores")
    rows = {
        cells[0]: cells
        for line in output.splitlines()
        if line.startswith("| ") and not line.startswith("| rule")
        for cells in [[c.strip() for c in line.split("|")[1:-1]]]
    }
    assert set(rows) == {"best (the service's)", "mean score", "centroid"}
    assert float(rows["best (the service's)"][3]) > 0  # every same pair above every different one
    assert "33 same-person and 264 different-person comparisons." in output


def test_quality_probe_measures_the_grade_against_its_outcome():
    output = probe("quality", "--quick")
    cells = [
        [c.strip() for c in line.split("|")[1:-1]]
        for line in output.splitlines()
        if line.startswith("| ")
    ]
    probes = {row[0]: row for row in cells if len(row) == 8 and row[0] != "probe"}
    assert len(probes) == 13  # clean and the quick set's 12 degradations
    assert probes["clean"][1] == "9/9" and probes["clean"][7] == "9/9"  # every clean frame in
    assert probes["jpeg q 3"][7].startswith("0/"), probes["jpeg q 3"]  # none of these
    assert "Graded high below 0.5: 0." in output
    aucs = {row[0]: float(row[1]) for row in cells if len(row) == 3 and row[0] != "score"}
    assert aucs["recognizability"] > 0.9 > aucs["sharpness"], aucs
    assert "Quality per face: " in output and " ms of measures" in output
