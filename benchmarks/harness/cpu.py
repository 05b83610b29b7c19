"""CPU seconds a side of the comparison used: a server's whole process tree, or this process."""

from __future__ import annotations

import psutil


class CpuMeter:
    """Cumulative user + system CPU seconds of a process and all its children (a server's
    arbiter, workers and runners), read before and after a measured pass."""

    def __init__(self, pid: int | None = None) -> None:
        self.root = psutil.Process(pid)
        self.pid = pid

    def seconds(self) -> float:
        if self.pid is None:  # this process: the in-process modes, without their children
            times = self.root.cpu_times()
            return times.user + times.system
        total = 0.0
        for process in [self.root, *self.root.children(recursive=True)]:
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total


def listening_pid(port: int) -> int:
    """The top process of whatever listens on ``port`` here (a gunicorn master, say)."""
    for connection in psutil.net_connections(kind="tcp"):
        if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port:
            process = psutil.Process(connection.pid)
            while process.parent() is not None and _listens(process.parent(), port):
                process = process.parent()
            return process.pid
    raise SystemExit(f"nothing listens on port {port} on this machine")


def _listens(process: psutil.Process, port: int) -> bool:
    try:
        return any(c.laddr.port == port for c in process.net_connections(kind="tcp"))
    except psutil.Error:
        return False
