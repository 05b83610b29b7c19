"""Do two versions of the service answer the same? A refactoring's check (issue 36: "no behaviour
change"): each git ref is checked out in a worktree of its own, served by a real ``bentoml serve``
(this checkout's virtual environment, the ref's code), and sent the same requests: every face
route over JSON and multipart, the galleries (enroll, search, verify, listings, erasure), the
info routes, and refusals (bad base64, an unknown format, a bad name, a missing key, a body the
route does not take). Answers are compared as status and JSON, with what differs by nature taken
out: request ids, timings, new faces' ids (numbered in order of appearance) and the version.

    .venv/bin/python -m benchmarks.probes.same_answers REF_BEFORE REF_AFTER

Prints each request whose answers differ (none: "same answers"), and exits 1 if any does.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from benchmarks.harness.model_store import pack_in_store
from tests.paths import CROWD, DEFAULT_PACK, IDENTITIES, ROOT
from tests.server import API_KEY, start_server

FACE_ID = re.compile(r"^[0-9a-f]{32}$")
# Fields that differ between two runs of one version.
VOLATILE = {"requestId", "request_id", "took", "version", "timings"}


def requests_sent() -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, httpx keyword arguments), in order: later ones read what earlier made."""
    photo, other, crowd = IDENTITIES[0], IDENTITIES[3], CROWD[0]
    image = base64.b64encode(photo.read_bytes()).decode()
    other_image = base64.b64encode(other.read_bytes()).decode()
    crowd_image = base64.b64encode(crowd.read_bytes()).decode()
    refused = base64.b64encode(b"#?RADIANCE\n" + bytes(64)).decode()  # a format not taken
    files = {"image": (photo.name, photo.read_bytes(), "image/jpeg")}
    sent: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/v1/health", {}),
        ("GET", f"/v1/info/model/{DEFAULT_PACK}", {}),
        ("POST", "/v1/detect", {"json": {"image": crowd_image}}),
        ("POST", "/v1/detect", {"json": {"image": crowd_image, "sortType": "LEFT_TO_RIGHT"}}),
        ("POST", "/v1/detect", {"json": {"image": crowd_image, "maxFaces": 2}}),
        ("POST", "/v1/file/detect", {"files": files}),
        ("POST", "/v1/feature", {"json": {"image": image}}),
        ("POST", "/v1/feature", {"json": {"image": image, "returnQuality": True}}),
        ("POST", "/v1/multi-embeddings", {"json": {"image": crowd_image}}),
        ("POST", "/v1/score", {"json": {"image1": image, "image2": other_image}}),
        ("POST", "/v1/detect", {"json": {"image": "not base64!"}}),
        (
            "POST",
            "/v1/detect",
            {"json": {"image": refused}},
        ),
        ("POST", "/v1/detect", {"content": b"{}", "headers": {"content-type": "text/plain"}}),
        ("POST", "/v1/detect", {"json": {"image": image}, "headers": {"x-api-key": "wrong"}}),
        ("POST", "/v1/galleries/same/faces", {"json": {"subject": "ada", "image": image}}),
        ("POST", "/v1/galleries/same/faces", {"json": {"subject": "bo", "image": other_image}}),
        ("POST", "/v1/galleries/same/faces", {"json": {"subject": "a/b", "image": image}}),
        ("POST", "/v1/galleries/same/search", {"json": {"image": image}}),
        ("POST", "/v1/galleries/same/search", {"json": {"image": crowd_image, "allFaces": True}}),
        ("POST", "/v1/galleries/same/verify", {"json": {"subject": "ada", "image": image}}),
        ("GET", "/v1/galleries", {}),
        ("GET", "/v1/galleries/same/subjects", {}),
        ("GET", "/v1/galleries/same/faces", {}),
        ("GET", "/v1/galleries/none/faces", {}),
        ("DELETE", "/v1/galleries/same/subjects/bo", {}),
        ("DELETE", "/v1/galleries/same?confirm=same", {}),
    ]
    return sent


def normalized(value: Any, ids: dict[str, str]) -> Any:
    """``value`` without what differs by nature; face ids numbered as they first appear."""
    if isinstance(value, dict):
        return {k: normalized(v, ids) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [normalized(v, ids) for v in value]
    if isinstance(value, str) and FACE_ID.match(value):
        return ids.setdefault(value, f"face-{len(ids)}")
    if isinstance(value, float):
        return round(value, 5)
    return value


@contextlib.contextmanager
def checked_out(ref: str, into: Path) -> Iterator[Path]:
    path = into / re.sub(r"[^A-Za-z0-9_.-]", "_", ref)
    subprocess.run(["git", "worktree", "add", "--detach", str(path), ref], cwd=ROOT, check=True)
    try:
        yield path
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, check=True)


def answers(checkout: Path, work: Path) -> list[tuple[int, Any]]:
    env = {"FACE_API_KEYS": API_KEY, "FACE_MODEL": DEFAULT_PACK}
    log = work / "serve.log"
    ids: dict[str, str] = {}
    found = []
    keyed = {"headers": {"x-api-key": API_KEY}, "timeout": 120}
    with start_server(log, env, cwd=checkout) as server, httpx.Client(**keyed) as api:
        for method, path, kwargs in requests_sent():
            response = api.request(method, server.url + path, **kwargs)
            try:
                body = response.json()
            except ValueError:
                body = response.text
            found.append((response.status_code, normalized(body, ids)))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("refs", nargs=2, help="two git refs: before and after")
    args = parser.parse_args()
    pack_in_store()
    results = []
    with tempfile.TemporaryDirectory(prefix="face-same-") as folder:
        for n, ref in enumerate(args.refs):
            work = Path(folder) / f"run{n}"
            work.mkdir()
            with checked_out(ref, Path(folder)) as checkout:
                results.append(answers(checkout, work))
    sent = requests_sent()
    differ = 0
    for (method, path, _), before, after in zip(sent, *results, strict=True):
        if before != after:
            differ += 1
            print(f"{method} {path}:\n  {args.refs[0]}: {json.dumps(before)[:600]}")
            print(f"  {args.refs[1]}: {json.dumps(after)[:600]}")
    statuses = " ".join(str(status) for status, _ in results[-1])
    print(f"{len(sent) - differ} of {len(sent)} requests answered the same (statuses: {statuses})")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
