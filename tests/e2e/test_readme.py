"""The README's commands and first call, and the API's examples (docs/api.md, "Examples"), run as
written against a real server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from tests.paths import DEFAULT_PACK, ROOT
from tests.server import API_KEY

README = (ROOT / "README.md").read_text()
API_DOCS = (ROOT / "docs" / "api.md").read_text()
README_URL = "http://127.0.0.1:3000"


def blocks(language: str, text: str = README) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def section(text: str, heading: str) -> str:
    """A section's text, from its heading (at any level) to the next heading of level 2."""
    return re.split(rf"^#+ {re.escape(heading)}\n", text, maxsplit=1, flags=re.M)[1].split(
        "\n## ", 1
    )[0]


def first_call_section() -> str:
    return section(README, "A first call")


def examples_section() -> str:
    return section(API_DOCS, "Examples")


def json_objects(text: str) -> list[dict]:
    """The JSON objects curl printed back to back (its output has no newlines)."""
    decoder, out, at = json.JSONDecoder(), [], 0
    while (at := text.find("{", at)) != -1:
        obj, at = decoder.raw_decode(text, at)
        out.append(obj)
    return out


def test_first_two_shell_blocks_are_serve_and_test():
    first, second = blocks("bash")[:2]
    assert first.strip() == "./scripts/serve.sh"
    assert second.strip() == "./scripts/test.sh"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "./scripts/test.sh" in ci


def test_the_first_call_runs_and_answers(server):
    [block] = blocks("bash", first_call_section())
    assert block.count("curl ") == 1  # one call
    script = "set -euo pipefail\n" + block.replace(README_URL, server.url)
    env = {**os.environ, "FACE_API_KEYS": f"{API_KEY},other"}
    result = subprocess.run(
        ["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    [answer] = json_objects(result.stdout)
    assert len(answer["faces"]) == 1, answer


def test_curl_examples_run_and_answer(server):
    script = "set -euo pipefail\n" + "\n".join(blocks("bash", examples_section()))
    script = script.replace(README_URL, server.url)
    env = {**os.environ, "FACE_API_KEYS": f"{API_KEY},other"}
    result = subprocess.run(
        ["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    answers = json_objects(result.stdout)
    keys = [set(a) for a in answers]
    assert {"seq", "faces"} in keys
    assert {"version", "feature", "face_detect"} in keys
    assert {"version", "embeddings", "face_detect"} in keys
    assert {"version", "embeddings_info_list"} in keys
    assert {"score", "face_detects"} in keys
    assert {"gallery", "subject", "faces", "unindexedFaces"} in keys  # enroll
    assert {"gallery", "results"} in keys  # search
    searched = next(a for a in answers if set(a) == {"gallery", "results"})
    assert searched["results"][0]["matches"][0]["subject"] == "yuke"
    assert {"deleted": 1} in answers
    assert {"score"} in keys
    assert {"status": "ok"} in answers
    # The served pack's page, named by /v1/info/model (whichever pack this checkout serves).
    [page] = [a for a in answers if "match_threshold" in a]
    assert page["model_name"] == DEFAULT_PACK, page
    scores = [a["score"] for a in answers if "score" in a]
    assert all(s > 0.375 for s in scores)  # both example photos are the same person


def test_python_examples_run(server):
    [bentoml_client] = blocks("python", first_call_section())
    [gallery_client] = blocks("python", examples_section())
    outputs = []
    for code in (bentoml_client, gallery_client):
        code = code.replace(README_URL, server.url)
        env = {**os.environ, "FACE_API_KEYS": API_KEY}
        result = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        outputs.append(result.stdout.strip())
    assert re.search(r"^1 face\(s\); same-person score 0\.\d+$", outputs[0], re.M)
    assert re.search(r"^best match yuke 0\.\d+ \{'desk': 7\}$", outputs[1], re.M), outputs[1]
    assert "deleted 1 face(s)" in outputs[1]
