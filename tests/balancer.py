"""A round-robin load balancer for the tests: several replicas of the service behind one URL, as a
user runs them behind theirs. Each request goes to the next replica in turn, so a test's calls
alternate between replicas: an enroll through one, the search after it through the other."""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from tests.server import RunningServer

# Per connection, not end to end: not forwarded either way.
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _BalancerServer

    def _forward(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP]
        client = self.server.next_replica()
        try:
            answer = client.request(self.command, self.path, headers=headers, content=body)
        except httpx.HTTPError:
            # the replica is down: what a balancer answers (the client sees no replica's answer)
            self.send_response(502)
            self.send_header("content-length", "0")
            self.end_headers()
            return
        self.send_response(answer.status_code)
        for key, value in answer.headers.multi_items():
            if key.lower() not in HOP_BY_HOP and key.lower() != "content-encoding":
                self.send_header(key, value)
        self.send_header("content-length", str(len(answer.content)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.content)

    do_GET = do_POST = do_DELETE = do_HEAD = do_PUT = do_PATCH = do_OPTIONS = _forward

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        pass


class _BalancerServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, replicas: Sequence[RunningServer]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.clients = [
            httpx.Client(base_url=r.url, timeout=120, limits=httpx.Limits(keepalive_expiry=2.0))
            for r in replicas
        ]
        self._turns = itertools.cycle(range(len(self.clients)))
        self._lock = threading.Lock()

    def next_replica(self) -> httpx.Client:
        with self._lock:
            return self.clients[next(self._turns)]


@contextlib.contextmanager
def balancing(replicas: Sequence[RunningServer]) -> Iterator[str]:
    """The balancer's URL, in front of ``replicas``, for the block."""
    server = _BalancerServer(replicas)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        for client in server.clients:
            client.close()
