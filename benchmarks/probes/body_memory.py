"""What one request body in flight costs a replica in memory, for the chart's sizes
(kubernetes/face-api: memory and /tmp from the requests in flight x the body limit).

A real `bentoml serve` on this machine's CPU; N clients at once each send a body just under the
body limit, for a while, and every process's peak resident memory (VmHWM, reset first) is read
against the same with 1 client. Two kinds of body, the worst for each side:
- JSON: a valid image (a noisy JPEG of a few megapixels, padded to the limit in its base64
  string's JSON with spaces the parser skips), so the body crosses to the runner;
- multipart (`/v1/file/detect`): the same image as a file field, which Starlette spools to /tmp
  past 1 MiB.

    .venv/bin/python -m benchmarks.probes.body_memory            # 8 clients, 20 MiB bodies
"""

from __future__ import annotations

import argparse
import base64
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np

from benchmarks.harness.load import API_KEY
from benchmarks.harness.model_store import pack_in_store

MiB = 1024 * 1024


def noisy_jpeg(target_bytes: int) -> bytes:
    """A JPEG of random pixels about ``target_bytes`` long (well under the pixel limit)."""
    rng = np.random.default_rng(0)
    side = 1024
    while True:
        pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        ok, data = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 100])
        assert ok
        if len(data) >= target_bytes or side >= 6000:
            return data.tobytes()
        side = int(side * (target_bytes / len(data)) ** 0.5) + 16


def tmp_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def one_round(
    srv: Any, kind: str, clients: int, seconds: float, body: bytes, image: bytes, tmpdir: Path
) -> str:
    """``clients`` sending one kind of body for ``seconds``: each process's peak RSS growth
    and the most /tmp held."""
    from tests.server import peak_rss_bytes, reset_peak_rss

    reset_peak_rss(srv)
    base = peak_rss_bytes(srv)
    stop = time.monotonic() + seconds
    codes: list[int] = []
    tmp_peak = [0]

    def client() -> None:
        with httpx.Client(base_url=srv.url, headers={"x-api-key": API_KEY}, timeout=300) as http:
            while time.monotonic() < stop:
                if kind == "json":
                    headers = {"content-type": "application/json"}
                    r = http.post("/v1/detect", content=body, headers=headers)
                else:
                    r = http.post("/v1/file/detect", files={"image": ("big.jpg", image)})
                codes.append(r.status_code)

    def watch_tmp() -> None:
        while time.monotonic() < stop:
            tmp_peak[0] = max(tmp_peak[0], tmp_bytes(tmpdir))
            time.sleep(0.05)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    threads.append(threading.Thread(target=watch_tmp))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    peak = peak_rss_bytes(srv)
    growth = {role: (peak[role] - base.get(role, 0)) / MiB for role in peak}
    statuses = {c: codes.count(c) for c in sorted(set(codes))}
    return (
        f"{kind}, {clients} clients: answers {statuses}; peak RSS growth MiB "
        + ", ".join(f"{r} {g:.0f}" for r, g in sorted(growth.items()))
        + f"; /tmp peak {tmp_peak[0] / MiB:.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--body-mib", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    pack_in_store()
    from tests.server import start_server

    limit = int(args.body_mib * MiB)
    image = noisy_jpeg(int(limit * 0.70))  # base64 of it is 4/3 longer: about 93% of the limit
    encoded = base64.b64encode(image).decode()
    body = ('{"image": "' + encoded + '"' + " " * (limit - len(encoded) - 40) + "}").encode()
    assert len(body) <= limit, (len(body), limit)
    print(f"JPEG {len(image) / MiB:.1f} MiB; JSON body {len(body) / MiB:.2f} MiB; limit {limit}")
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp) / "tmp"
        tmpdir.mkdir()
        env = {
            "FACE_API_KEYS": API_KEY,
            "FACE_MAX_BODY_BYTES": str(limit),
            "FACE_REQUEST_TIMEOUT_S": "120",
            "TMPDIR": str(tmpdir),
        }
        with start_server(Path(tmp) / "server.log", env) as srv:
            for kind in ("json", "multipart"):
                for clients in (1, args.clients):
                    print(one_round(srv, kind, clients, args.seconds, body, image, tmpdir))


if __name__ == "__main__":
    main()
