"""A real Milvus standalone server for the gallery tests and benchmark: the `milvus` package
("embedded Milvus" 2.3.5) unpacks the server binary and runs it offline, gRPC on ``port``.
One at a time on a host: its embedded etcd always takes port 2380, so a server holds a lock file
while it runs and another test run (or benchmark) on the same host waits for it."""

from __future__ import annotations

import contextlib
import fcntl
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.server import free_port

# Held while a server runs: its embedded etcd's fixed port is the host's one.
HOST_LOCK = Path("/tmp/face-api-milvus-server.lock")


@dataclass
class MilvusServer:
    """One server's data folder and port: stopping and starting it again keeps the data."""

    data_dir: Path
    port: int
    # Milvus's proxy.timeTickInterval: how long a Strong read waits at most (200 ms by default).
    time_tick_ms: int | None = None
    # common.security.authorizationEnabled: users and roles, `root:Milvus` the first admin.
    authorization: bool = False
    # Other milvus.yaml values, by dotted key (``{"dataCoord.segment.maxSize": 2048}``).
    config: dict[str, Any] = field(default_factory=dict)
    _server: Any = None
    _lock: Any = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        from milvus import MilvusServer as Embedded

        self._lock = HOST_LOCK.open("a")
        fcntl.flock(self._lock, fcntl.LOCK_EX)  # waits for another run's server to stop
        try:
            self._server = Embedded(_same_port_config())
            self._server.set_base_dir(str(self.data_dir))
            # In `configs`, the port is required, not a first guess to count up from.
            self._server.config.configs["proxy_port"] = self.port
            if self.time_tick_ms is not None:
                self._server.config.set("proxy.timeTickInterval", self.time_tick_ms)
            if self.authorization:
                self._server.config.set("authorization_enabled", True)
            for key, value in self.config.items():
                self._server.config.set(key, value)
            self._server.start()  # returns once its health endpoint answers
        except BaseException:
            self.stop()
            raise

    def drop_everything(self) -> None:
        """Every collection dropped: an empty server for the next tests."""
        from pymilvus import MilvusClient

        client = MilvusClient(uri=self.uri)
        try:
            for collection in client.list_collections():
                client.drop_collection(collection)
        finally:
            client.close()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._lock is not None:
            self._lock.close()  # releases the host's lock
            self._lock = None


@contextlib.contextmanager
def running_milvus(
    data_dir: Path, time_tick_ms: int | None = None, authorization: bool = False
) -> Iterator[MilvusServer]:
    server = MilvusServer(data_dir, free_port(), time_tick_ms, authorization)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _same_port_config() -> Any:
    """The package probes each port with a plain bind, which fails while the last run's
    connections sit in TIME_WAIT, and then moves the server to the next port. Milvus itself
    listens with SO_REUSEADDR, so probing the same way lets a restart keep its port."""
    from milvus import MilvusServerConfig

    class SamePortConfig(MilvusServerConfig):
        def try_bind_port(self, port: int) -> socket.socket | None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
                sock.listen()
                return sock
            except OSError:
                sock.close()
                return None

    return SamePortConfig()
